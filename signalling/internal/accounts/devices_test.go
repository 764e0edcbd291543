package accounts

import (
	"reflect"
	"strings"
	"testing"
)

func TestDevices(t *testing.T) {
	forEachBackend(t, Config{}, func(t *testing.T, e *env) {
		uid, tok, dev := e.register("quinn", "pw")
		tok2, dev2 := e.login("quinn", "pw")
		out := e.expect("GET", v3+"/devices", tok, nil, 200, "")
		list, _ := out["devices"].([]any)
		if len(list) != 2 {
			t.Fatalf("devices = %v", out)
		}
		for _, d := range list {
			d := d.(obj)
			if d["device_id"] != dev && d["device_id"] != dev2 || d["last_seen_ts"] == nil || d["last_seen_ip"] != "127.0.0.1" {
				t.Errorf("device = %v", d)
			}
		}

		e.expect("PUT", v3+"/devices/"+dev2, tok, obj{"display_name": "Laptop"}, 200, "")
		got := e.expect("GET", v3+"/devices/"+dev2, tok, nil, 200, "")
		if got["display_name"] != "Laptop" || got["device_id"] != dev2 {
			t.Errorf("device = %v", got)
		}
		e.expect("PUT", v3+"/devices/"+dev2, tok, obj{}, 200, "") // no display_name: unchanged
		if got := e.expect("GET", v3+"/devices/"+dev2, tok, nil, 200, ""); got["display_name"] != "Laptop" {
			t.Errorf("display name changed to %v", got["display_name"])
		}
		for _, c := range []struct {
			name, method, path string
			body               any
			status             int
			code               string
		}{
			{"get unknown", "GET", "/devices/NOPE", nil, 404, "M_NOT_FOUND"},
			{"put unknown", "PUT", "/devices/NOPE", obj{"display_name": "x"}, 404, "M_NOT_FOUND"},
			{"put too long", "PUT", "/devices/" + dev, obj{"display_name": strings.Repeat("x", 101)}, 400, "M_TOO_LARGE"},
			{"put bad type", "PUT", "/devices/" + dev, obj{"display_name": 1}, 400, "M_BAD_JSON"},
			{"put not json", "PUT", "/devices/" + dev, "{", 400, "M_NOT_JSON"},
			{"delete_devices missing list", "POST", "/delete_devices", obj{}, 400, "M_MISSING_PARAM"},
			{"delete_devices bad list", "POST", "/delete_devices", obj{"devices": "x"}, 400, "M_BAD_JSON"},
		} {
			t.Run(c.name, func(t *testing.T) {
				e.expect(c.method, v3+c.path, tok, c.body, c.status, c.code)
			})
		}
		// Another user sees none of quinn's devices.
		_, rtok, _ := e.register("rob", "pw")
		e.expect("GET", v3+"/devices/"+dev, rtok, nil, 404, "M_NOT_FOUND")

		// DELETE /devices/{id}: UIA, then the device and its token go.
		e.expect("GET", v3+"/account/whoami", tok2, nil, 200, "")
		out = e.expect("DELETE", v3+"/devices/"+dev2, tok, nil, 401, "")
		session := out["session"]
		e.expect("DELETE", v3+"/devices/"+dev2, tok, obj{"auth": passwordAuth(session, "quinn", "bad")}, 401, "M_FORBIDDEN")
		// The session authorises deleting dev2 only.
		e.expect("DELETE", v3+"/devices/"+dev, tok, obj{"auth": passwordAuth(session, "quinn", "pw")}, 403, "M_FORBIDDEN")
		e.expect("DELETE", v3+"/devices/"+dev2, tok, obj{"auth": passwordAuth(session, "quinn", "pw")}, 200, "")
		e.expect("GET", v3+"/account/whoami", tok2, nil, 401, "M_UNKNOWN_TOKEN")
		e.expect("GET", v3+"/devices/"+dev2, tok, nil, 404, "M_NOT_FOUND")
		if got, want := e.deletedDevices(), []string{uid + "/" + dev2}; !reflect.DeepEqual(got, want) {
			t.Errorf("deleted = %v, want %v", got, want)
		}
		// Deleting a device that is gone is a success.
		out = e.expect("DELETE", v3+"/devices/GONE", tok, nil, 401, "")
		e.expect("DELETE", v3+"/devices/GONE", tok, obj{"auth": passwordAuth(out["session"], "quinn", "pw")}, 200, "")

		// POST /delete_devices.
		tok3, dev3 := e.login("quinn", "pw")
		tok4, dev4 := e.login("quinn", "pw")
		out = e.expect("POST", v3+"/delete_devices", tok, obj{"devices": []string{dev3, dev4, "GONE"}}, 401, "")
		e.expect("POST", v3+"/delete_devices", tok, obj{"devices": []string{dev3, dev4, "GONE"},
			"auth": passwordAuth(out["session"], "quinn", "pw")}, 200, "")
		for _, tk := range []string{tok3, tok4} {
			e.expect("GET", v3+"/account/whoami", tk, nil, 401, "M_UNKNOWN_TOKEN")
		}
		if got := e.deletedDevices(); len(got) != 3 {
			t.Errorf("deleted = %v", got)
		}
		e.expect("GET", v3+"/account/whoami", tok, nil, 200, "")
	})
}
