package servername

import (
	"strings"
	"testing"
)

func TestCheckOwn(t *testing.T) {
	tests := []struct {
		in      string
		wantErr string // "" for valid
	}{
		// The spec's own examples (appendices, "Server Name").
		{"matrix.org", ""},
		{"matrix.org:8888", ""},
		{"1.2.3.4", ""},
		{"1.2.3.4:1234", ""},
		{"[1234:5678::abcd]", ""},
		{"[1234:5678::abcd]:5678", ""},
		// More valid names.
		{"localhost", ""},
		{"localhost:8008", ""},
		{"MATRIX.ORG", ""},
		{"a-b.c-d.example", ""},
		{"[::1]", ""},
		{"[::ffff:1.2.3.4]:80", ""},
		{"1.2.3", ""}, // a dns-name by the grammar
		{"x:65535", ""},
		{strings.Repeat("a.", 127) + "a", ""}, // 255 characters
		// Invalid.
		{"", "must not be empty"},
		{"bad_name", "invalid character '_'"},
		{"exa mple.org", "invalid character ' '"},
		{"ex\u00e4mple.org", "invalid character"},
		{"example.org.", "empty label"},
		{".example.org", "empty label"},
		{"a..b", "empty label"},
		{strings.Repeat("a", 64) + ".org", "longer than 63"},
		{strings.Repeat("a.", 128), "more than 255"},
		{"1.2.3.256", "more than 255"},
		{"example.org:", "port \"\" must be 1 to 5 digits"},
		{"example.org:0", "out of range"},
		{"example.org:65536", "out of range"},
		{"example.org:123456", "1 to 5 digits"},
		{"example.org:80a", "decimal digits"},
		{"example.org:-1", "decimal digits"},
		{":8008", "hostname must not be empty"},
		{"1234:5678::abcd", "must be written in brackets"},
		{"[1234:5678::abcd", "missing its closing"},
		{"[1234:5678::abcd]x", "unexpected"},
		{"[]", "2 to 45 characters"},
		{"[1.2.3.4]", "not a valid IPv6"},
		{"[fe80::1%eth0]", "invalid character '%'"},
		{"[gggg::1]", "invalid character 'g'"},
		{"[1::2::3]", "not a valid IPv6"},
		{"[::1]:", "1 to 5 digits"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			err := CheckOwn(tt.in)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("CheckOwn(%q) = %v, want valid", tt.in, err)
			case tt.wantErr != "" && err == nil:
				t.Errorf("CheckOwn(%q) = nil, want error containing %q", tt.in, tt.wantErr)
			case tt.wantErr != "" && !strings.Contains(err.Error(), tt.wantErr):
				t.Errorf("CheckOwn(%q) = %v, want error containing %q", tt.in, err, tt.wantErr)
			}
		})
	}
}

// FuzzCheck checks that the validator never panics and that whatever it
// accepts is made only of the grammar's characters and has at most one port.
func FuzzCheckOwn(f *testing.F) {
	for _, s := range []string{"matrix.org", "1.2.3.4:1234", "[1234:5678::abcd]:5678", "a..b", "[", "]:", "x:99999"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if CheckOwn(s) != nil {
			return
		}
		for _, r := range s {
			if !isAlnum(r) && !strings.ContainsRune("-.:[]", r) {
				t.Fatalf("accepted %q with character %q", s, r)
			}
		}
		if len(s) > 255+2+6 {
			t.Fatalf("accepted %q of length %d", s, len(s))
		}
	})
}

// TestCheckIsTheGrammar: remote names are held to the grammar only, so
// names that CheckOwn refuses for our own use still pass Check.
func TestCheckIsTheGrammar(t *testing.T) {
	for _, tt := range []struct {
		in      string
		grammar bool
		ownToo  bool
	}{
		{"example.com", true, true},
		{"example.com.", true, false},
		{"domain:0", true, false},
		{strings.Repeat("a", 64) + ".example", true, false},
		{"1.2.3.999", true, false},
		{"exa_mple.com", false, false},
		{"[::1", false, false},
		{"host:99999", false, false},
	} {
		if got := Check(tt.in) == nil; got != tt.grammar {
			t.Errorf("Check(%q) ok = %v, want %v", tt.in, got, tt.grammar)
		}
		if got := CheckOwn(tt.in) == nil; got != tt.ownToo {
			t.Errorf("CheckOwn(%q) ok = %v, want %v", tt.in, got, tt.ownToo)
		}
	}
}
