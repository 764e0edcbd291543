package config

import (
	"strings"
	"testing"
)

func TestCheckListen(t *testing.T) {
	tests := []struct {
		in      string
		wantErr string
	}{
		{"127.0.0.1:8008", ""},
		{":8008", ""},
		{"0.0.0.0:0", ""},
		{"[::1]:8008", ""},
		{"[::]:443", ""},
		{"[fe80::1%eth0]:80", ""},
		{"localhost:8008", ""},
		{"127.0.0.1", "want host:port"},
		{"", "want host:port"},
		{"127.0.0.1:", "1 to 5 digits"},
		{"127.0.0.1:http", "decimal digits"},
		{"127.0.0.1:70000", "out of range"},
		{"::1:8008", "want host:port"},
		{"[::1:8008", "want host:port"},
		{"[]:80", "want host:port"},
		{"[nothex]:80", "want host:port"},
		{"a]b:80", "want host:port"},
		{"bad_host:80", "invalid character '_'"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			err := checkListen(tt.in)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("checkListen(%q) = %v, want valid", tt.in, err)
			case tt.wantErr != "" && err == nil:
				t.Errorf("checkListen(%q) = nil, want error containing %q", tt.in, tt.wantErr)
			case tt.wantErr != "" && !strings.Contains(err.Error(), tt.wantErr):
				t.Errorf("checkListen(%q) = %v, want error containing %q", tt.in, err, tt.wantErr)
			}
		})
	}
}

func TestEffectiveRegistration(t *testing.T) {
	for _, tc := range []struct{ listen, mode, want string }{
		{"127.0.0.1:8008", "", "open"},
		{"[::1]:8008", "", "open"},
		{"localhost:8008", "", "open"},
		{":8008", "", "closed"},
		{"0.0.0.0:8008", "", "closed"},
		{"192.168.1.2:8008", "", "closed"},
		{"example.org:8008", "", "closed"},
		{"0.0.0.0:8008", "open", "open"},
		{"127.0.0.1:8008", "token", "token"},
	} {
		c := Config{Listen: tc.listen, Registration: tc.mode}
		if got := c.EffectiveRegistration(); got != tc.want {
			t.Errorf("listen %q registration %q: got %q, want %q", tc.listen, tc.mode, got, tc.want)
		}
	}
}
