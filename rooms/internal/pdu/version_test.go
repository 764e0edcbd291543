package pdu

import (
	"strings"
	"testing"
)

// TestVersionTable pins what changes between the supported room versions
// (rooms/v10.md, v11.md, v12.md).
func TestVersionTable(t *testing.T) {
	tests := []struct {
		id   string
		want Version
	}{
		{"10", Version{ID: "10", Redaction: RedactV9, StateRes: StateResV2, KnockRestricted: true, IntegerPowerLevels: true}},
		{"11", Version{ID: "11", Redaction: RedactV11, StateRes: StateResV2, RedactsInContent: true, CreatorIsSender: true,
			KnockRestricted: true, IntegerPowerLevels: true}},
		{"12", Version{ID: "12", Redaction: RedactV11, StateRes: StateResV2_1, RedactsInContent: true, CreatorIsSender: true,
			RoomIDIsCreateHash: true, PrivilegedCreators: true, KnockRestricted: true, IntegerPowerLevels: true}},
	}
	for _, tt := range tests {
		t.Run(tt.id, func(t *testing.T) {
			v, ok := LookupVersion(tt.id)
			if !ok {
				t.Fatalf("LookupVersion(%q) not found", tt.id)
			}
			if *v != tt.want {
				t.Errorf("version %s = %+v, want %+v", tt.id, *v, tt.want)
			}
			if MustVersion(tt.id) != v {
				t.Errorf("MustVersion(%q) differs from LookupVersion", tt.id)
			}
		})
	}
	if got := strings.Join(SupportedVersions(), ","); got != "10,11,12" {
		t.Errorf("SupportedVersions = %s, want 10,11,12", got)
	}
	if _, ok := LookupVersion(DefaultVersion); !ok {
		t.Errorf("DefaultVersion %q is not supported", DefaultVersion)
	}
}

func TestUnsupportedVersions(t *testing.T) {
	for _, id := range []string{"", "1", "9", "13", "org.example.custom", "1O"} {
		t.Run(id, func(t *testing.T) {
			if _, ok := LookupVersion(id); ok {
				t.Errorf("LookupVersion(%q) found a version", id)
			}
			defer func() {
				if recover() == nil {
					t.Errorf("MustVersion(%q) did not panic", id)
				}
			}()
			MustVersion(id)
		})
	}
}
