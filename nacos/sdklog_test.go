package nacos

import (
	"strings"
	"testing"
)

// TestRedactAccessKeyAndSignature: the headers that access_key and
// secret_key put on every request never reach the log, and words that only
// end like a secret's name stay.
func TestRedactAccessKeyAndSignature(t *testing.T) {
	for _, in := range []string{
		`request=metadata:{type:"SubscribeServiceRequest" headers:{key:"ak" value:"AK-SECRET"} headers:{key:"app" value:"caddy"}}`,
		`headers:{key:"signature" value:"SIG-SECRET"} headers:{key:"data" value:"caddy"}`,
		`headers:{key:"Spas-AccessKey" value:"AK-SECRET"} headers:{key:"app" value:"caddy"}`,
		`map[ak:AK-SECRET app:caddy signature:SIG-SECRET]`,
		`{"accessKey":"AK-SECRET","app":"caddy"}`,
	} {
		out := redactSecrets(in)
		if strings.Contains(out, "SECRET") || !strings.Contains(out, "REDACTED") || !strings.Contains(out, "caddy") {
			t.Errorf("redactSecrets(%q) = %q", in, out)
		}
	}
	for _, keep := range []string{`map[break:1 oak:2]`, `headers:{key:"bak" value:"x"}`} {
		if out := redactSecrets(keep); out != keep {
			t.Errorf("redactSecrets(%q) = %q, want it unchanged", keep, out)
		}
	}
}
