package fedapi

import (
	"testing"

	"github.com/plexus-chat/plexus/internal/cjson"
)

func TestACLAllows(t *testing.T) {
	for _, tc := range []struct {
		acl, server string
		want        bool
	}{
		{`{"allow":["*"]}`, "example.org", true},
		{`{}`, "example.org", false}, // allow defaults to nothing
		{`{"allow":["*"],"deny":["evil.com"]}`, "evil.com", false},
		{`{"allow":["*"],"deny":["evil.com"]}`, "evil.com:8448", false}, // the port is not considered
		{`{"allow":["*"],"deny":["evil.com"]}`, "EVIL.COM", false},      // case-insensitive
		{`{"allow":["*"],"deny":["*.evil.com"]}`, "a.evil.com", false},
		{`{"allow":["*"],"deny":["*.evil.com"]}`, "evil.com", true},
		{`{"allow":["h?.test"]}`, "hs.test", true},
		{`{"allow":["h?.test"]}`, "hss.test", false},
		{`{"allow":["a.b"]}`, "aXb", false}, // . is literal
		{`{"allow":["*"],"allow_ip_literals":false}`, "1.2.3.4", false},
		{`{"allow":["*"],"allow_ip_literals":false}`, "[::1]:8448", false},
		{`{"allow":["*"],"allow_ip_literals":"no"}`, "1.2.3.4", true}, // not a boolean: the default
		{`{"allow":["*"]}`, "1.2.3.4:80", true},
		{`{"allow":[1,"ok.org"]}`, "ok.org", true}, // non-strings ignored
		{`{"allow":"*"}`, "ok.org", false},
	} {
		c, err := cjson.Parse([]byte(tc.acl))
		if err != nil {
			t.Fatal(err)
		}
		if got := ACLAllows(c, tc.server); got != tc.want {
			t.Errorf("%s for %s: got %v, want %v", tc.acl, tc.server, got, tc.want)
		}
	}
}
