package etcd

import (
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/caddy-discovery/caddy-discovery/upstreams/upstreamstest"
)

// sourceFields are the config fields of an etcd source; every error of its
// configuration starts with one of them (after the server's name, for a
// server of the etcd app).
var sourceFields = []string{
	"service", "format", "prefix", "metadata", "fields", "server",
	"endpoints", "username", "password", "tls", "ca_file", "cert_file", "key_file", "tls_server_name", "dial_timeout",
	"allow", "deny", "regex", "max_services", "idle_timeout", "first_answer_timeout", "max_lookups", "unknown_ttl", "denied_status",
	"servers", // the etcd app's
}

// FuzzJSON: an etcd source's JSON (and the etcd app's) either provisions
// without a request to etcd, with the same checks at adapt time as at load
// time, or fails with an error that starts with the field to fix and never
// shows the password.
//
//	go test -run '^$' -fuzz '^FuzzJSON$' -fuzztime 30s -parallel 1 ./etcd/
func FuzzJSON(f *testing.F) {
	for _, s := range [][2]string{
		{`{"service": "shop/web"}`, ``},
		{`{"service": "shop", "format": "kratos", "metadata": {"version": "v2"}}`, ``},
		{`{"service": "user.rpc", "format": "go-zero", "endpoints": ["https://10.0.0.1:2379"], "username": "u", "password": "s3cr3t-pass"}`, ``},
		{`{"service": "cart", "format": "json", "prefix": "/svc/cart/", "fields": {"address": "host"}}`, ``},
		{`{"service": "cart", "format": "etcd", "fields": {"address": "host"}}`, ``},
		{`{"service": "a", "format": "zk"}`, ``},
		{`{"service": "a b"}`, ``},
		{`{"service": "a", "endpoints": ["http://u:s3cr3t-pass@10.0.0.1:2379"]}`, ``},
		{`{"service": "a", "endpoints": ["10.0.0.1"]}`, ``},
		{`{"service": "a", "cert_file": "/c"}`, ``},
		{`{"service": "a", "username": "u"}`, ``},
		{`{"service": "a", "server": "prod", "username": "u", "password": "s3cr3t-pass"}`, `{"servers": {"prod": {"endpoints": ["10.0.0.1:2379"]}}}`},
		{`{"service": "a", "server": "dev"}`, `{"servers": {"prod": {}}}`},
		{`{"service": "{env.HOME}", "password": "{env.P}", "username": "{env.U}"}`, ``},
		{`{"service": "a", "dial_timeout": -1}`, ``},
	} {
		f.Add([]byte(s[0]), []byte(s[1]))
	}
	f.Fuzz(func(t *testing.T, source, appJSON []byte) {
		if strings.Contains(string(source)+string(appJSON), "file.") {
			return // {file.*} placeholders read files, which may block
		}
		u := new(EtcdUpstreams)
		if err := caddy.StrictUnmarshalJSON(source, u); err != nil {
			return // encoding/json's own errors
		}
		check := func(err error) {
			t.Helper()
			msg := err.Error()
			if rest, ok := strings.CutPrefix(msg, "etcd server "); ok {
				if _, after, ok := strings.Cut(rest, `": `); ok {
					msg = after
				}
			}
			if !upstreamstest.NamesField(msg, sourceFields...) && !strings.Contains(msg, "is not defined in the etcd app") {
				t.Fatalf("%s: error %q does not start with the field to fix", source, err)
			}
			if pw := u.Password; len(pw) >= 6 && !strings.Contains(strings.ReplaceAll(string(source), pw, ""), pw) && strings.Contains(err.Error(), pw) {
				t.Fatalf("%s: error %q shows the password", source, err)
			}
		}
		adaptErr := u.Validate()
		if adaptErr != nil {
			check(adaptErr)
		}
		app := new(App)
		if caddy.StrictUnmarshalJSON(appJSON, app) == nil {
			if err := app.Provision(caddy.Context{}); err != nil {
				check(err)
				app = new(App)
			}
		}
		err := u.provision(zap.NewNop(), app)
		if err != nil {
			check(err)
		} else if adaptErr != nil && !strings.ContainsAny(string(source), "{}") {
			t.Fatalf("%s: refused at adapt time (%v) but provisioned", source, adaptErr)
		}
		if err := u.Cleanup(); err != nil {
			t.Fatal(err)
		}
	})
}
