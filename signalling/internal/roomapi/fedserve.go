package roomapi

import (
	"context"
	"fmt"

	"github.com/plexus-chat/plexus/internal/mxerr"
)

// What the federation endpoints read about our aliases and directory
// (Server-Server API, "Querying for information" and "Public Room
// Directory"), for signalling's fedlocal.Local.

// ResolveLocalAlias returns the room one of our aliases points to:
// 400 M_INVALID_PARAM for a malformed alias, 404 M_NOT_FOUND for another
// server's alias or one that is not mapped.
func (a *API) ResolveLocalAlias(ctx context.Context, alias string) (string, error) {
	al, err := parseAlias(alias)
	if err != nil {
		return "", err
	}
	if al.server != a.cfg.ServerName {
		return "", mxerr.NotFound(fmt.Sprintf("Room alias %s is not on this server", alias))
	}
	return a.resolveAlias(ctx, al)
}

// PublicRooms returns a page of our published room directory, as
// GET /publicRooms answers it. roomTypes nil means any type; "" in it
// stands for rooms without one.
func (a *API) PublicRooms(ctx context.Context, limit *int, since, searchTerm string, roomTypes map[string]bool) (map[string]any, error) {
	req := &publicRoomsRequest{Limit: limit, Since: since, roomTypes: roomTypes}
	req.Filter.GenericSearchTerm = searchTerm
	return a.publicRoomsPage(ctx, req)
}
