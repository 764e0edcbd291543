package sfutest

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/pion/webrtc/v4/pkg/media/ivfreader"
	"github.com/pion/webrtc/v4/pkg/media/oggreader"
)

// VideoClip is one simulcast layer of the looping clip: Frames with a normal
// GOP, and Key, the same frames each encoded as a key frame (Key[i] stands
// in for Frames[i] when a subscriber asked for a key frame).
type VideoClip struct {
	Width, Height int
	Frames        [][]byte
	Key           [][]byte
	FrameDuration time.Duration
}

// AudioClip is the looping Opus clip, one 20 ms packet per entry.
type AudioClip struct {
	Packets       [][]byte
	FrameDuration time.Duration
}

// Fixtures is the whole clip: Video[0] is the low layer ("q", 320x180),
// Video[1] the middle ("h", 640x360), Video[2] the high ("f", 1280x720).
type Fixtures struct {
	Video [3]*VideoClip
	Audio *AudioClip
}

// layerFiles names the IVF files per layer as gen.sh writes them.
var layerFiles = [3]string{"video-180", "video-360", "video-720"}

// Load reads the fixtures from dir (sfu/testdata).
func Load(dir string) (*Fixtures, error) {
	var fx Fixtures
	for i, name := range layerFiles {
		v, err := loadVideo(filepath.Join(dir, name+".ivf"), filepath.Join(dir, name+"-key.ivf"))
		if err != nil {
			return nil, err
		}
		fx.Video[i] = v
	}
	a, err := loadAudio(filepath.Join(dir, "audio.ogg"))
	if err != nil {
		return nil, err
	}
	fx.Audio = a
	return &fx, nil
}

func loadVideo(normal, key string) (*VideoClip, error) {
	frames, hdr, err := readIVF(normal)
	if err != nil {
		return nil, err
	}
	keys, khdr, err := readIVF(key)
	if err != nil {
		return nil, err
	}
	if len(keys) != len(frames) || khdr.Width != hdr.Width || khdr.Height != hdr.Height {
		return nil, fmt.Errorf("sfutest: %s and %s differ in frame count or size", normal, key)
	}
	if hdr.TimebaseNumerator == 0 || hdr.TimebaseDenominator == 0 {
		return nil, fmt.Errorf("sfutest: %s: no time base", normal)
	}
	return &VideoClip{
		Width:         int(hdr.Width),
		Height:        int(hdr.Height),
		Frames:        frames,
		Key:           keys,
		FrameDuration: time.Second * time.Duration(hdr.TimebaseNumerator) / time.Duration(hdr.TimebaseDenominator),
	}, nil
}

func readIVF(path string) ([][]byte, *ivfreader.IVFFileHeader, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, fmt.Errorf("sfutest: %w (run sfu/testdata/gen.sh)", err)
	}
	defer f.Close()
	r, hdr, err := ivfreader.NewWith(f)
	if err != nil {
		return nil, nil, fmt.Errorf("sfutest: %s: %w", path, err)
	}
	var frames [][]byte
	for {
		frame, _, err := r.ParseNextFrame()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, nil, fmt.Errorf("sfutest: %s: %w", path, err)
		}
		frames = append(frames, frame)
	}
	if len(frames) == 0 {
		return nil, nil, fmt.Errorf("sfutest: %s: no frames", path)
	}
	return frames, hdr, nil
}

// loadAudio reads Opus packets from an Ogg file written with one packet per
// page (gen.sh's -page_duration 20000), skipping the OpusHead/OpusTags pages.
func loadAudio(path string) (*AudioClip, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("sfutest: %w (run sfu/testdata/gen.sh)", err)
	}
	defer f.Close()
	r, _, err := oggreader.NewWith(f)
	if err != nil {
		return nil, fmt.Errorf("sfutest: %s: %w", path, err)
	}
	var pkts [][]byte
	for {
		page, hdr, err := r.ParseNextPage()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("sfutest: %s: %w", path, err)
		}
		if _, isHeader := hdr.HeaderType(page); isHeader || len(page) == 0 {
			continue
		}
		pkts = append(pkts, page)
	}
	if len(pkts) == 0 {
		return nil, fmt.Errorf("sfutest: %s: no Opus packets", path)
	}
	return &AudioClip{Packets: pkts, FrameDuration: 20 * time.Millisecond}, nil
}
