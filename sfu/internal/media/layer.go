package media

import "strconv"

// Layer is a simulcast spatial layer: 0 is the lowest ("q"), 2 the highest
// ("f"). LayerNone means no layer: paused, muted or not watched.
type Layer int8

// LayerNone is "no layer".
const LayerNone Layer = -1

// maxLayers is the number of simulcast layers LiveKit clients publish.
const maxLayers = 3

// MaxLayers is the number of simulcast layers a track may have.
const MaxLayers = maxLayers

// LayerFromRID maps a simulcast RID to a layer. LiveKit clients use "q",
// "h" and "f" (quarter, half, full resolution); some send "0", "1", "2". An
// empty RID is a non-simulcast track, which is layer 0. Unknown RIDs map to
// layer 0 too, so a track is never lost for an odd name.
func LayerFromRID(rid string) Layer {
	switch rid {
	case "h", "1":
		return 1
	case "f", "2":
		return 2
	default:
		return 0
	}
}

// String returns the RID-style name of l.
func (l Layer) String() string {
	switch l {
	case LayerNone:
		return "none"
	case 0:
		return "q"
	case 1:
		return "h"
	case 2:
		return "f"
	}
	return "layer" + strconv.Itoa(int(l))
}

func (l Layer) valid() bool { return l >= 0 && l < maxLayers }

// LayerInfo describes one simulcast layer as the publisher announced it.
type LayerInfo struct {
	Layer         Layer
	Width, Height uint32
	Bitrate       int // bits per second, 0 = unknown
}

// selection is everything that decides a DownTrack's layer; selectLayer is a
// pure function of it.
type selection struct {
	layers    []LayerInfo // announced layers; empty = one layer (0)
	reqW      uint32      // requested dimensions; 0x0 = no limit
	reqH      uint32
	quality   Layer // requested quality; 2 (HIGH) when never set
	bandwidth Layer // allocator's limit; 2 when unconstrained
	subMuted  bool  // the subscriber disabled the track
	pubMuted  bool  // the publisher muted the track
	available [maxLayers]bool
	audio     bool
}

// highestLayer is the highest layer the publisher announced.
func (s *selection) highestLayer() Layer {
	h := Layer(0)
	for _, li := range s.layers {
		if li.Layer > h && li.Layer.valid() {
			h = li.Layer
		}
	}
	return h
}

// dimensionLayer is the smallest announced layer that is at least as large
// as the requested size in both directions; the highest layer when none is.
// This is LiveKit's rule: a subscriber never gets less than its video
// element shows unless the publisher sends nothing bigger.
func (s *selection) dimensionLayer() Layer {
	if s.reqW == 0 && s.reqH == 0 {
		return maxLayers - 1
	}
	best := LayerNone
	var bestW, bestH uint32
	for _, li := range s.layers {
		if !li.Layer.valid() || li.Width == 0 || li.Height == 0 {
			continue
		}
		if li.Width >= s.reqW && li.Height >= s.reqH {
			if best == LayerNone || li.Width*li.Height < bestW*bestH {
				best, bestW, bestH = li.Layer, li.Width, li.Height
			}
		}
	}
	if best == LayerNone {
		return maxLayers - 1
	}
	return best
}

// desired is the layer the subscriber wants regardless of what the
// publisher currently sends: what dynacast reports upstream.
func (s *selection) desired() Layer {
	if s.subMuted {
		return LayerNone
	}
	if s.audio {
		return 0
	}
	l := min(s.dimensionLayer(), s.quality, s.bandwidth, s.highestLayer())
	if l < LayerNone {
		l = LayerNone
	}
	return l
}

// selectLayer is the layer to forward now: the desired layer, or the
// highest lower one the publisher is actually sending; if it sends none of
// those, the lowest higher layer it does send (a subscriber seeing something
// beats one seeing nothing while the publisher reacts to dynacast). When
// the publisher sends nothing at all (not started yet, or a static screen
// share), the desired layer stays the target, so forwarding resumes without
// a switch when packets come. Audio has no layers to choose from, and its
// packets stop during DTX silence: availability does not apply.
func selectLayer(s *selection) Layer {
	if s.pubMuted {
		return LayerNone
	}
	d := s.desired()
	if d == LayerNone || s.audio || s.available == [maxLayers]bool{} {
		return d
	}
	for l := d; l >= 0; l-- {
		if s.available[l] {
			return l
		}
	}
	for l := d + 1; l < maxLayers; l++ {
		if s.available[l] {
			return l
		}
	}
	return LayerNone
}
