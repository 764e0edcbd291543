package rtc

import (
	"crypto/rand"
	"strings"
	"sync"

	"github.com/livekit/protocol/livekit"
	"github.com/pion/webrtc/v4"
	"google.golang.org/protobuf/proto"

	"github.com/plexus-chat/plexus/sfu/internal/media"
)

// PublishedTrack is one track a participant publishes: announced by an
// AddTrackRequest, live once its media arrives.
type PublishedTrack struct {
	owner  *Participant
	sid    string
	cid    string
	kind   livekit.TrackType
	layers []media.LayerInfo
	// cids are every client id the request named (simulcast codecs).
	cids []string

	mu     sync.Mutex // guards the fields below
	info   *livekit.TrackInfo
	recv   *media.Receiver
	mid    string
	closed bool
	// everWatched is set once a subscriber exists: until then dynacast
	// does not tell the publisher to pause (nobody has asked yet).
	everWatched bool
}

// SID returns the track's "TR_" sid.
func (t *PublishedTrack) SID() string { return t.sid }

// Info returns a copy of the track's TrackInfo.
func (t *PublishedTrack) Info() *livekit.TrackInfo {
	t.mu.Lock()
	defer t.mu.Unlock()
	return proto.Clone(t.info).(*livekit.TrackInfo)
}

// Receiver returns the track's media receiver, nil before media arrived.
func (t *PublishedTrack) Receiver() *media.Receiver {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return nil
	}
	return t.recv
}

func (t *PublishedTrack) visible() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.recv != nil && !t.closed
}

func (t *PublishedTrack) close() {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return
	}
	t.closed = true
	r := t.recv
	t.mu.Unlock()
	if r != nil {
		r.Close()
	}
}

// newTrack builds the track for an AddTrackRequest.
func newTrack(owner *Participant, req *livekit.AddTrackRequest) *PublishedTrack {
	sid := "TR_" + randomID(12)
	vls := req.GetLayers()
	mime := ""
	var codecs []*livekit.SimulcastCodecInfo
	cids := []string{req.GetCid()}
	for _, sc := range req.GetSimulcastCodecs() {
		if mime == "" && sc.GetCodec() != "" {
			mime = sc.GetCodec()
		}
		if len(vls) == 0 {
			vls = sc.GetLayers()
		}
		if sc.GetCid() != "" {
			cids = append(cids, sc.GetCid())
		}
		codecs = append(codecs, &livekit.SimulcastCodecInfo{
			MimeType: sc.GetCodec(), Cid: sc.GetCid(), Layers: sc.GetLayers(), VideoLayerMode: sc.GetVideoLayerMode(),
		})
	}
	if mime != "" && !strings.Contains(mime, "/") {
		if req.GetType() == livekit.TrackType_AUDIO {
			mime = "audio/" + mime
		} else {
			mime = "video/" + mime
		}
	}
	var layers []media.LayerInfo
	for _, vl := range vls {
		l := media.Layer(0)
		if len(vls) > 1 {
			l = qualityLayer(vl.GetQuality())
		}
		layers = append(layers, media.LayerInfo{Layer: l, Width: vl.GetWidth(), Height: vl.GetHeight(), Bitrate: int(vl.GetBitrate())})
	}
	info := &livekit.TrackInfo{
		Sid:    sid,
		Type:   req.GetType(),
		Name:   req.GetName(),
		Muted:  req.GetMuted(),
		Width:  req.GetWidth(),
		Height: req.GetHeight(),
		//lint:ignore SA1019 the SDKs still read simulcast and layers (dimensions, qualities)
		Simulcast: len(vls) > 1,
		Source:    req.GetSource(),
		//lint:ignore SA1019 as above
		Layers:        vls,
		MimeType:      mime,
		Codecs:        codecs,
		DisableRed:    req.GetDisableRed(),
		Encryption:    req.GetEncryption(),
		Stream:        req.GetStream(),
		AudioFeatures: req.GetAudioFeatures(),
	}
	return &PublishedTrack{owner: owner, sid: sid, cid: req.GetCid(), kind: req.GetType(), layers: layers, cids: cids, info: info}
}

func (t *PublishedTrack) matchesCid(id string) bool {
	for _, c := range t.cids {
		if c != "" && c == id {
			return true
		}
	}
	return false
}

// qualityLayer maps LiveKit's VideoQuality to a simulcast layer.
func qualityLayer(q livekit.VideoQuality) media.Layer {
	switch q {
	case livekit.VideoQuality_LOW:
		return 0
	case livekit.VideoQuality_MEDIUM:
		return 1
	case livekit.VideoQuality_OFF:
		return media.LayerNone
	}
	return 2
}

func trackKind(k webrtc.RTPCodecType) livekit.TrackType {
	if k == webrtc.RTPCodecTypeVideo {
		return livekit.TrackType_VIDEO
	}
	return livekit.TrackType_AUDIO
}

const idAlphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

// randomID returns n random base62 characters.
func randomID(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	for i := range b {
		b[i] = idAlphabet[int(b[i])%len(idAlphabet)]
	}
	return string(b)
}
