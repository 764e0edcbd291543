#!/usr/bin/env bash
# gen.sh regenerates the SFU's media fixtures: a 4 s looping clip as real
# VP8 in IVF at the three simulcast sizes LiveKit clients publish (1280x720,
# 640x360, 320x180), each once with a normal GOP and once with every frame a
# key frame, and a 4 s Opus clip in Ogg. The tests and benchmarks in
# ../ (and sfu/internal/sfutest) read them; the bytes are real encoder output
# so the SFU forwards what a browser would send, not synthetic payloads.
#
# The all-key-frame files let a test publisher answer a PLI/FIR the way an
# encoder does: its next frame is a key frame (frame i of the "-key" file
# stands in for frame i of the normal one).
#
# Requires ffmpeg with libvpx and libopus (Debian: apt-get install ffmpeg).
# Run from anywhere: ./sfu/testdata/gen.sh
set -euo pipefail
cd "$(dirname "$0")"

dur=4   # seconds; the readers loop the clip
fps=30
gop=60  # a key frame every 2 s, as a camera encoder might

# The source: ffmpeg's moving test pattern, so every frame differs (the
# benchmarks identify packets by their payload bytes).
src="testsrc2=size=1280x720:rate=${fps}:duration=${dur}"

vp8() { # name width height bitrate gop
	local name=$1 w=$2 h=$3 rate=$4 g=$5
	ffmpeg -hide_banner -loglevel error -y -f lavfi -i "$src" \
		-vf "scale=${w}:${h}" -c:v libvpx -deadline realtime -cpu-used 8 \
		-b:v "$rate" -minrate "$rate" -maxrate "$rate" -bufsize "$rate" \
		-g "$g" -keyint_min "$g" -auto-alt-ref 0 -lag-in-frames 0 -error-resilient 1 \
		-f ivf "$name"
}

vp8 video-720.ivf 1280 720 1500k "$gop"
vp8 video-360.ivf 640 360 500k "$gop"
vp8 video-180.ivf 320 180 150k "$gop"
vp8 video-720-key.ivf 1280 720 1500k 1
vp8 video-360-key.ivf 640 360 500k 1
vp8 video-180-key.ivf 320 180 150k 1

# A chirp, not a steady tone: a periodic signal would give identical Opus
# frames, and the benchmarks tell packets apart by their bytes.
# -page_duration 20000: one 20 ms Opus packet per Ogg page, which is what
# pion's oggreader (page by page) needs to hand out single packets.
ffmpeg -hide_banner -loglevel error -y -f lavfi \
	-i "aevalsrc=0.4*sin(2*PI*(200+150*t)*t)+0.05*random(0):s=48000:d=${dur}" \
	-c:a libopus -b:a 32k -frame_duration 20 -application voip -page_duration 20000 -ac 1 \
	audio.ogg

ls -l ./*.ivf ./*.ogg
