package accounts

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"unicode/utf8"

	"github.com/plexus-chat/plexus/internal/mxerr"
	"github.com/plexus-chat/plexus/internal/storage"
	"github.com/plexus-chat/plexus/signalling/internal/endpoint"
)

// device is a Device of the Client-Server API ("Device management").
type device struct {
	DeviceID    string  `json:"device_id"`
	DisplayName *string `json:"display_name,omitempty"`
	LastSeenIP  *string `json:"last_seen_ip,omitempty"`
	LastSeenTS  *int64  `json:"last_seen_ts,omitempty"`
}

const deviceColumns = `device_id, display_name, last_seen_ip, last_seen_ts`

func scanDevice(row interface{ Scan(...any) error }) (device, error) {
	var d device
	var name, ip sql.NullString
	var ts sql.NullInt64
	if err := row.Scan(&d.DeviceID, &name, &ip, &ts); err != nil {
		return device{}, err
	}
	if name.Valid {
		d.DisplayName = &name.String
	}
	if ip.Valid {
		d.LastSeenIP = &ip.String
	}
	if ts.Valid {
		d.LastSeenTS = &ts.Int64
	}
	return d, nil
}

func errDeviceNotFound() error { return mxerr.NotFound("Device not found") }

// handleDevices is GET /devices.
func (a *Accounts) handleDevices(w http.ResponseWriter, r *http.Request, s *endpoint.Session) {
	ctx := r.Context()
	devices := []device{}
	err := a.db.View(ctx, func(tx *storage.Tx) error {
		rows, err := tx.Query(ctx, `SELECT `+deviceColumns+` FROM devices WHERE user_id = ? ORDER BY device_id`, s.UserID)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			d, err := scanDevice(rows)
			if err != nil {
				return err
			}
			devices = append(devices, d)
		}
		return rows.Err()
	})
	if err != nil {
		fail(w, fmt.Errorf("accounts: list devices: %w", err))
		return
	}
	endpoint.Write(w, map[string]any{"devices": devices})
}

// getDevice reads one of the user's devices; ok is false if there is none.
func (a *Accounts) getDevice(ctx context.Context, userID, deviceID string) (d device, ok bool, err error) {
	err = a.db.View(ctx, func(tx *storage.Tx) error {
		d, err = scanDevice(tx.QueryRow(ctx, `SELECT `+deviceColumns+` FROM devices WHERE user_id = ? AND device_id = ?`, userID, deviceID))
		return err
	})
	if errors.Is(err, sql.ErrNoRows) {
		return device{}, false, nil
	}
	if err != nil {
		return device{}, false, fmt.Errorf("accounts: read device: %w", err)
	}
	return d, true, nil
}

// handleGetDevice is GET /devices/{deviceId}.
func (a *Accounts) handleGetDevice(w http.ResponseWriter, r *http.Request, s *endpoint.Session) {
	d, ok, err := a.getDevice(r.Context(), s.UserID, r.PathValue("deviceId"))
	if err != nil {
		fail(w, err)
		return
	}
	if !ok {
		fail(w, errDeviceNotFound())
		return
	}
	endpoint.Write(w, d)
}

// handlePutDevice is PUT /devices/{deviceId}: it renames an existing
// device. Creating devices this way is for application services only, so
// an unknown device is 404.
func (a *Accounts) handlePutDevice(w http.ResponseWriter, r *http.Request, s *endpoint.Session) {
	var body struct {
		DisplayName *string `json:"display_name"`
	}
	if err := endpoint.Decode(r, 0, &body); err != nil {
		fail(w, err)
		return
	}
	if body.DisplayName != nil && utf8.RuneCountInString(*body.DisplayName) > maxDeviceDisplayNameLen {
		fail(w, mxerr.New(http.StatusBadRequest, mxerr.CodeTooLarge,
			fmt.Sprintf("Device display name is too long (max %d)", maxDeviceDisplayNameLen)))
		return
	}
	ctx := r.Context()
	deviceID := r.PathValue("deviceId")
	found := false
	err := a.db.Update(ctx, func(tx *storage.Tx) error {
		var n int
		if err := tx.QueryRow(ctx, `SELECT COUNT(*) FROM devices WHERE user_id = ? AND device_id = ?`, s.UserID, deviceID).Scan(&n); err != nil {
			return fmt.Errorf("accounts: read device: %w", err)
		}
		found = n > 0
		if !found || body.DisplayName == nil {
			return nil
		}
		_, err := tx.Exec(ctx, `UPDATE devices SET display_name = ? WHERE user_id = ? AND device_id = ?`, *body.DisplayName, s.UserID, deviceID)
		return err
	})
	if err != nil {
		fail(w, err)
		return
	}
	if !found {
		fail(w, errDeviceNotFound())
		return
	}
	endpoint.Write(w, empty)
}

// handleDeleteDevice is DELETE /devices/{deviceId}, authorised by an
// m.login.password stage. A device that is already gone is a success.
func (a *Accounts) handleDeleteDevice(w http.ResponseWriter, r *http.Request, s *endpoint.Session) {
	var body struct {
		Auth json.RawMessage `json:"auth"`
	}
	if err := endpoint.Decode(r, 0, &body); err != nil {
		fail(w, err)
		return
	}
	deviceID := r.PathValue("deviceId")
	a.deleteWithUIA(w, r, s, "DELETE /devices/"+deviceID, body.Auth, []string{deviceID})
}

// handleDeleteDevices is POST /delete_devices.
func (a *Accounts) handleDeleteDevices(w http.ResponseWriter, r *http.Request, s *endpoint.Session) {
	var body struct {
		Devices *[]string       `json:"devices"`
		Auth    json.RawMessage `json:"auth"`
	}
	if err := endpoint.Decode(r, 0, &body); err != nil {
		fail(w, err)
		return
	}
	if body.Devices == nil {
		fail(w, mxerr.MissingParam("Missing params: devices"))
		return
	}
	a.deleteWithUIA(w, r, s, "POST /delete_devices", body.Auth, *body.Devices)
}

func (a *Accounts) deleteWithUIA(w http.ResponseWriter, r *http.Request, s *endpoint.Session, op string, auth json.RawMessage, ids []string) {
	ctx := r.Context()
	if _, err := a.runUIA(ctx, uiaRequest{op: op, userID: s.UserID, flows: [][]string{{stagePassword}}, auth: auth}); err != nil {
		fail(w, err)
		return
	}
	if err := a.deleteDevices(ctx, s.UserID, ids, false); err != nil {
		fail(w, err)
		return
	}
	endpoint.Write(w, empty)
}
