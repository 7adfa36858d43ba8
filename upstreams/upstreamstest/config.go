package upstreamstest

import (
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
)

// Config is what a source's FuzzJSON checks of each input: its JSON (and
// its app's) either provisions without a request to the registry, with the
// same checks at adapt time as at load time, or fails with an error that
// starts with the field to fix and never shows the password.
type Config struct {
	// App is the app's name ("etcd"): an error about one of its servers
	// starts `<App> server "<name>": `, and a missing one says it "is not
	// defined in the <App> app".
	App string

	// Fields are the source's and its app's config fields.
	Fields []string
}

// ConfigInput is one input, decoded: its JSON as given and the password it
// holds, its adapt-time check, the app's Provision from the app's JSON
// (see ProvisionApp), the source's Provision with that app, and its
// Cleanup.
type ConfigInput struct {
	JSON      []byte
	Password  string
	Validate  func() error
	App       func() error
	Provision func() error
	Cleanup   func() error
}

// Check runs the checks on one input.
func (c Config) Check(t *testing.T, s ConfigInput) {
	t.Helper()
	check := func(err error) {
		t.Helper()
		msg := err.Error()
		if rest, ok := strings.CutPrefix(msg, c.App+" server "); ok {
			if _, after, ok := strings.Cut(rest, `": `); ok {
				msg = after
			}
		}
		if !NamesField(msg, c.Fields...) && !strings.Contains(msg, "is not defined in the "+c.App+" app") {
			t.Fatalf("%s: error %q does not start with the field to fix", s.JSON, err)
		}
		if pw := s.Password; len(pw) >= 6 && !strings.Contains(strings.ReplaceAll(string(s.JSON), pw, ""), pw) && strings.Contains(err.Error(), pw) {
			t.Fatalf("%s: error %q shows the password", s.JSON, err)
		}
	}
	adaptErr := s.Validate()
	if adaptErr != nil {
		check(adaptErr)
	}
	if err := s.App(); err != nil {
		check(err)
	}
	err := s.Provision()
	if err != nil {
		check(err)
	} else if adaptErr != nil && !strings.ContainsAny(string(s.JSON), "{}") {
		t.Fatalf("%s: refused at adapt time (%v) but provisioned", s.JSON, adaptErr)
	}
	if err := s.Cleanup(); err != nil {
		t.Fatal(err)
	}
}

// ProvisionApp decodes appJSON into a new app and provisions it, as Caddy
// would before a source uses it. It returns the app, or, when appJSON is no
// app's JSON or the app's Provision fails, a new unprovisioned one, with
// that Provision error.
func ProvisionApp[A any, P interface {
	*A
	caddy.Provisioner
}](appJSON []byte) (P, error) {
	app := P(new(A))
	if caddy.StrictUnmarshalJSON(appJSON, app) != nil {
		return P(new(A)), nil
	}
	if err := app.Provision(caddy.Context{}); err != nil {
		return P(new(A)), err
	}
	return app, nil
}
