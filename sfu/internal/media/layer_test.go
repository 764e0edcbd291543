package media

import "testing"

func TestLayerFromRID(t *testing.T) {
	for rid, want := range map[string]Layer{"q": 0, "": 0, "0": 0, "h": 1, "1": 1, "f": 2, "2": 2, "x": 0} {
		if got := LayerFromRID(rid); got != want {
			t.Errorf("LayerFromRID(%q) = %d, want %d", rid, got, want)
		}
	}
}

func TestSelectLayer(t *testing.T) {
	all := [maxLayers]bool{true, true, true}
	base := func() selection {
		return selection{layers: testLayers, quality: 2, bandwidth: 2, available: all}
	}
	tests := []struct {
		name          string
		mod           func(*selection)
		want, desired Layer
	}{
		{"default is highest", func(*selection) {}, 2, 2},
		{"dimensions pick smallest layer that covers", func(s *selection) { s.reqW, s.reqH = 600, 300 }, 1, 1},
		{"exact dimensions", func(s *selection) { s.reqW, s.reqH = 320, 180 }, 0, 0},
		{"tiny element", func(s *selection) { s.reqW, s.reqH = 50, 50 }, 0, 0},
		{"bigger than any layer", func(s *selection) { s.reqW, s.reqH = 4000, 2000 }, 2, 2},
		{"quality caps", func(s *selection) { s.quality = 0 }, 0, 0},
		{"quality off", func(s *selection) { s.quality = LayerNone }, LayerNone, LayerNone},
		{"bandwidth caps", func(s *selection) { s.bandwidth = 1 }, 1, 1},
		{"bandwidth none pauses", func(s *selection) { s.bandwidth = LayerNone }, LayerNone, LayerNone},
		{"subscriber muted", func(s *selection) { s.subMuted = true }, LayerNone, LayerNone},
		{"publisher muted", func(s *selection) { s.pubMuted = true }, LayerNone, 2},
		{"paused layer falls back lower", func(s *selection) { s.available[2] = false }, 1, 2},
		{"only higher layer sent", func(s *selection) { s.quality = 0; s.available = [3]bool{false, false, true} }, 2, 0},
		{"nothing sent yet keeps wanting", func(s *selection) { s.reqW, s.reqH = 600, 300; s.available = [3]bool{} }, 1, 1},
		{"single layer track", func(s *selection) { s.layers = nil; s.available = [3]bool{true} }, 0, 0},
		{"two layers announced", func(s *selection) { s.layers = testLayers[:2] }, 1, 1},
		{"audio ignores availability", func(s *selection) { s.audio = true; s.available = [3]bool{} }, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := base()
			tt.mod(&s)
			if got := selectLayer(&s); got != tt.want {
				t.Errorf("selectLayer = %v, want %v", got, tt.want)
			}
			if got := s.desired(); got != tt.desired {
				t.Errorf("desired = %v, want %v", got, tt.desired)
			}
		})
	}
}
