package rtc

import (
	"testing"

	"github.com/livekit/protocol/livekit"

	"github.com/plexus-chat/plexus/sfu/internal/media"
)

func TestNewTrackLayers(t *testing.T) {
	for _, tc := range []struct {
		name   string
		req    *livekit.AddTrackRequest
		layers []media.LayerInfo
		mime   string
		cids   []string
	}{
		{
			name: "audio",
			req:  &livekit.AddTrackRequest{Cid: "a", Type: livekit.TrackType_AUDIO, SimulcastCodecs: []*livekit.SimulcastCodec{{Codec: "opus", Cid: "a"}}},
			mime: "audio/opus", cids: []string{"a", "a"},
		},
		{
			name: "single-layer video is layer 0 whatever its quality",
			req: &livekit.AddTrackRequest{Cid: "v", Type: livekit.TrackType_VIDEO,
				Layers: []*livekit.VideoLayer{{Quality: livekit.VideoQuality_HIGH, Width: 1280, Height: 720}}},
			layers: []media.LayerInfo{{Layer: 0, Width: 1280, Height: 720}},
			cids:   []string{"v"},
		},
		{
			name: "simulcast from the codec's layers",
			req: &livekit.AddTrackRequest{Cid: "main", Type: livekit.TrackType_VIDEO, SimulcastCodecs: []*livekit.SimulcastCodec{{
				Codec: "video/VP8", Cid: "low",
				Layers: []*livekit.VideoLayer{
					{Quality: livekit.VideoQuality_LOW, Width: 320, Height: 180, Bitrate: 150_000},
					{Quality: livekit.VideoQuality_MEDIUM, Width: 640, Height: 360},
					{Quality: livekit.VideoQuality_HIGH, Width: 1280, Height: 720},
				},
			}}},
			layers: []media.LayerInfo{{Layer: 0, Width: 320, Height: 180, Bitrate: 150_000}, {Layer: 1, Width: 640, Height: 360}, {Layer: 2, Width: 1280, Height: 720}},
			mime:   "video/VP8", cids: []string{"main", "low"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr := newTrack(nil, tc.req)
			if len(tr.sid) != 15 || tr.sid[:3] != "TR_" {
				t.Errorf("sid %q", tr.sid)
			}
			if len(tr.layers) != len(tc.layers) {
				t.Fatalf("layers %+v, want %+v", tr.layers, tc.layers)
			}
			for i := range tc.layers {
				if tr.layers[i] != tc.layers[i] {
					t.Errorf("layer %d: %+v, want %+v", i, tr.layers[i], tc.layers[i])
				}
			}
			if tr.info.MimeType != tc.mime {
				t.Errorf("mime %q, want %q", tr.info.MimeType, tc.mime)
			}
			for _, c := range tc.cids {
				if !tr.matchesCid(c) {
					t.Errorf("does not match cid %q", c)
				}
			}
			if tr.matchesCid("") || tr.matchesCid("other") {
				t.Error("matches a foreign cid")
			}
		})
	}
}

func TestQualityLayer(t *testing.T) {
	for q, want := range map[livekit.VideoQuality]media.Layer{
		livekit.VideoQuality_LOW: 0, livekit.VideoQuality_MEDIUM: 1, livekit.VideoQuality_HIGH: 2, livekit.VideoQuality_OFF: media.LayerNone,
	} {
		if got := qualityLayer(q); got != want {
			t.Errorf("%v: %v, want %v", q, got, want)
		}
	}
}
