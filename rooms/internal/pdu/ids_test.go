package pdu

import (
	"strings"
	"testing"
)

// TestParseServerName follows appendices, "Server Name": hostname (DNS
// name, IPv4 literal or bracketed IPv6 literal) and an optional port of 1
// to 5 digits.
func TestParseServerName(t *testing.T) {
	tests := []struct {
		in string
		ok bool
	}{
		// The spec's examples.
		{"matrix.org", true},
		{"matrix.org:8888", true},
		{"1.2.3.4", true},
		{"1.2.3.4:1234", true},
		{"[1234:5678::abcd]", true},
		{"[1234:5678::abcd]:5678", true},
		// More valid names.
		{"localhost", true},
		{"a", true},
		{"MATRIX.ORG", true}, // case-sensitive, but upper-case is valid
		{"my-server.example.com", true},
		{"example.com.", true},
		{"xn--bcher-kva.example", true},
		{"[::1]", true},
		{"[::]", true},
		{"[::1]:8448", true},
		{"[2001:db8::ff00:42:8329]", true},
		{"[::ffff:192.0.2.1]", true},
		{"[ABCD:EF01::1]", true},
		{"domain:0", true},
		{"domain:65535", true},
		{"domain:00080", true},
		{strings.Repeat("a", 255), true},
		// Invalid names.
		{"", false},
		{strings.Repeat("a", 256), false},
		{":8448", false},
		{"domain:", false},
		{"domain:65536", false},
		{"domain:123456", false},
		{"domain:-1", false},
		{"domain:+80", false},
		{"domain:8a", false},
		{"domain: 80", false},
		{"do main", false},
		{"under_score.org", false},
		{"dömain.org", false},
		{"domain/path", false},
		{"user@domain", false},
		{"a:b:c", false},
		{"::1", false},
		{"1234:5678::abcd", false},
		{"[::1", false},
		{"::1]", false},
		{"[]", false},
		{"[::1]]", false},
		{"[::1]x", false},
		{"[::1]:", false},
		{"[::1]:99999", false},
		{"[1.2.3.4]", false},
		{"[::1%eth0]", false},
		{"[fe80::1%25eth0]", false},
		{"[gggg::1]", false},
		{"[::1]:80:80", false},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseServerName(tt.in)
			if (err == nil) != tt.ok {
				t.Fatalf("ParseServerName(%q) error = %v, want ok=%v", tt.in, err, tt.ok)
			}
			if tt.ok && string(got) != tt.in {
				t.Errorf("ParseServerName(%q) = %q, want it unchanged", tt.in, got)
			}
		})
	}
}

// TestParseUserID covers the user ID grammar and the historical grammar
// that events from existing rooms need (appendices, "User Identifiers",
// "Historical User IDs": servers MUST accept any non-surrogate code points
// except ':' and NUL, including control characters and the empty
// string).
func TestParseUserID(t *testing.T) {
	tests := []struct {
		in         string
		ok         bool
		local      string
		domain     ServerName
		historical bool
	}{
		{"@alice:example.org", true, "alice", "example.org", false},
		{"@a.b_c=d-e/f+g:example.org", true, "a.b_c=d-e/f+g", "example.org", false},
		{"@0:1.2.3.4:8448", true, "0", "1.2.3.4:8448", false},
		{"@bob:[::1]:8448", true, "bob", "[::1]:8448", false},
		{"@alice:localhost", true, "alice", "localhost", false},
		// Historical user IDs.
		{"@Alice:example.org", true, "Alice", "example.org", true},
		{"@alice smith:example.org", true, "alice smith", "example.org", true},
		{"@!#$%&'*~:example.org", true, "!#$%&'*~", "example.org", true},
		{"@日本:example.org", true, "日本", "example.org", true},
		{"@😀:example.org", true, "😀", "example.org", true},
		{"@a\u0001b:example.org", true, "a\u0001b", "example.org", true},
		{"@\u007f:example.org", true, "\u007f", "example.org", true},
		{"@:example.org", true, "", "example.org", true},
		// Invalid.
		{"", false, "", "", false},
		{"@", false, "", "", false},
		{"@:", false, "", "", false},
		{"alice:example.org", false, "", "", false},
		{"#alice:example.org", false, "", "", false},
		{"@alice", false, "", "", false},
		{"@alice:", false, "", "", false},
		{"@alice:bad host", false, "", "", false},
		{"@alice:example.org:99999", false, "", "", false},
		{"@a\x00b:example.org", false, "", "", false},
		{"@a\xffb:example.org", false, "", "", false},
		{"@a\xed\xa0\x80b:example.org", false, "", "", false}, // encoded surrogate
		{"@" + strings.Repeat("a", 242) + ":example.org", true, strings.Repeat("a", 242), "example.org", false}, // 255 bytes
		{"@" + strings.Repeat("a", 243) + ":example.org", false, "", "", false},                                 // 256 bytes
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			u, err := ParseUserID(tt.in)
			if (err == nil) != tt.ok {
				t.Fatalf("ParseUserID(%q) error = %v, want ok=%v", tt.in, err, tt.ok)
			}
			if !tt.ok {
				return
			}
			if u.Localpart() != tt.local || u.Domain() != tt.domain {
				t.Errorf("Localpart, Domain = %q, %q; want %q, %q", u.Localpart(), u.Domain(), tt.local, tt.domain)
			}
		})
	}
}

// TestParseRoomID covers both room ID forms (appendices, "Room IDs"):
// "!opaque:domain" up to room version 11 and "!" + 43 characters of
// URL-safe unpadded base64 (the create event's hash) from version 12.
func TestParseRoomID(t *testing.T) {
	hash := "!" + strings.Repeat("A", 42) + "_"
	tests := []struct {
		in     string
		ok     bool
		domain ServerName
	}{
		{"!room:example.org", true, "example.org"},
		{"!AbCdEf123:example.org:8448", true, "example.org:8448"},
		{"!room:[::1]", true, "[::1]"},
		{"!:example.org", true, "example.org"},
		{"!ro om\u0001日:example.org", true, "example.org"},
		{"!Nhcu5BS-UMnFX7hBVfVSoXiD7OgH6iRT-xyIuqDnpYQ", true, ""}, // the spec's v12 example
		{hash, true, ""},
		{"!" + strings.Repeat("a", 252) + ":b", true, "b"}, // 255 bytes
		// Invalid.
		{"", false, ""},
		{"!", false, ""},
		{"room:example.org", false, ""},
		{"$room:example.org", false, ""},
		{"!room:", false, ""},
		{"!room:bad host", false, ""},
		{"!ro\x00om:example.org", false, ""},
		{"!ro\xffom:example.org", false, ""},
		{"!" + strings.Repeat("a", 253) + ":b", false, ""}, // 256 bytes
		{hash[:43], false, ""},
		{hash + "A", false, ""},
		{"!" + strings.Repeat("+", 43), false, ""},
		{"!" + strings.Repeat("A", 42) + "=", false, ""},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			r, err := ParseRoomID(tt.in)
			if (err == nil) != tt.ok {
				t.Fatalf("ParseRoomID(%q) error = %v, want ok=%v", tt.in, err, tt.ok)
			}
			if tt.ok && r.Domain() != tt.domain {
				t.Errorf("Domain = %q, want %q", r.Domain(), tt.domain)
			}
		})
	}
}

// TestParseEventID covers room version 4+ event IDs: "$" + 43 characters
// of URL-safe unpadded base64 of the reference hash.
func TestParseEventID(t *testing.T) {
	tests := []struct {
		in string
		ok bool
	}{
		{"$Rqnc-F-dvnEYJTyHq_iKxU2bZ1CI92-kuZq3a5lr5Zg", true}, // the spec's example
		{string(fakeEventID(0)), true},
		{"$" + strings.Repeat("-", 43), true},
		{"", false},
		{"$", false},
		{"$0:domain", false},
		{"$Rqnc-F-dvnEYJTyHq_iKxU2bZ1CI92-kuZq3a5lr5Z", false},
		{"$Rqnc-F-dvnEYJTyHq_iKxU2bZ1CI92-kuZq3a5lr5Zgg", false},
		{"!Rqnc-F-dvnEYJTyHq_iKxU2bZ1CI92-kuZq3a5lr5Zg", false},
		{"$Rqnc+F/dvnEYJTyHq_iKxU2bZ1CI92-kuZq3a5lr5Zg", false},
		{"$Rqnc-F-dvnEYJTyHq_iKxU2bZ1CI92-kuZq3a5lr5Z=", false},
		{"$Rqnc-F-dvnEYJTyHq_iKxU2bZ1CI92-kuZq3a5lr5Z ", false},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			_, err := ParseEventID(tt.in)
			if (err == nil) != tt.ok {
				t.Errorf("ParseEventID(%q) error = %v, want ok=%v", tt.in, err, tt.ok)
			}
		})
	}
}
