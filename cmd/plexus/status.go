package main

import (
	"context"
	"errors"

	"github.com/plexus-chat/plexus/federation"
	"github.com/plexus-chat/plexus/sfu"
	"github.com/plexus-chat/plexus/signalling"
	"github.com/plexus-chat/plexus/turn"
)

// statusSources are the parts of the server the operator page reports on,
// by name; a disabled part is left out.
func statusSources(fed *federation.Federation, t *turn.Server, s *lateSFU) map[string]signalling.StatusSource {
	out := map[string]signalling.StatusSource{"sfu": s}
	if fed != nil {
		out["federation"] = fed
	}
	if t != nil {
		out["turn"] = t
	}
	return out
}

// lateSFU reports the SFU's status once it exists. The client side is
// built first because the SFU saves its worlds through it; srv is set
// once, before the HTTP listener starts, so no request sees it change.
type lateSFU struct {
	srv *sfu.Server
}

// Status implements signalling.StatusSource: the SFU's counters at the
// top level (the operator page charts those) and its rooms.
func (l *lateSFU) Status(context.Context) (any, error) {
	if l.srv == nil {
		return nil, errors.New("the SFU is off (--sfu=off)")
	}
	st := l.srv.Stats()
	rooms := []map[string]any{}
	for _, r := range l.srv.Rooms() {
		parts := []map[string]any{}
		for _, p := range r.Participants {
			tracks := []map[string]any{}
			for _, t := range p.Tracks {
				layers := []map[string]any{}
				for _, l := range t.Layers {
					layers = append(layers, map[string]any{
						"layer": l.Layer, "width": l.Width, "height": l.Height, "packets": l.Packets, "active": l.Active,
					})
				}
				tracks = append(tracks, map[string]any{
					"sid": t.SID, "kind": t.Kind, "mime_type": t.MimeType, "source": t.Source,
					"muted": t.Muted, "subscribers": t.Subscribers, "layers": layers,
				})
			}
			parts = append(parts, map[string]any{
				"identity": p.Identity, "sid": p.SID, "joined_at": p.JoinedAt.UnixMilli(), "tracks": tracks,
			})
		}
		rooms = append(rooms, map[string]any{
			"name": r.Name, "sid": r.SID, "created": r.Created.UnixMilli(), "participants": parts,
		})
	}
	return map[string]any{
		"rooms":             st.Rooms,
		"participants":      st.Participants,
		"tracks":            st.Tracks,
		"down_tracks":       st.DownTracks,
		"received_packets":  st.ReceivedPackets,
		"forwarded_packets": st.ForwardedPackets,
		"forwarded_bytes":   st.ForwardedBytes,
		"nacks":             st.NACKs,
		"nacks_answered":    st.NACKsAnswered,
		"plis":              st.PLIs,
		"data_relayed":      st.DataRelayed,
		"data_refused":      st.DataRefused,
		"room_list":         rooms,
	}, nil
}
