package zookeeper

import (
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/caddy-discovery/caddy-discovery/upstreams/upstreamstest"
)

// sourceFields are the config fields of a zookeeper source; every error of
// its configuration starts with one of them (after the server's name, for a
// server of the zookeeper app).
var sourceFields = []string{
	"service", "format", "base_path", "ssl_port", "protocols", "metadata", "server",
	"servers", "session_timeout", "username", "password", "relist_interval",
	"tls", "ca_file", "cert_file", "key_file", "tls_server_name",
	"allow", "deny", "regex", "max_services", "idle_timeout", "first_answer_timeout", "max_lookups", "unknown_ttl", "denied_status",
}

// FuzzJSON: a zookeeper source's JSON (and the zookeeper app's) either
// provisions without a request to ZooKeeper, with the same checks at adapt
// time as at load time, or fails with an error that starts with the field
// to fix and never shows the password.
//
//	go test -run '^$' -fuzz '^FuzzJSON$' -fuzztime 30s -parallel 1 ./zookeeper/
func FuzzJSON(f *testing.F) {
	for _, s := range [][2]string{
		{`{"service": "orders"}`, ``},
		{`{"service": "org.example.Greeter", "format": "dubbo", "protocols": ["tri"], "metadata": {"version": "1.0.0"}}`, ``},
		{`{"service": "orders", "format": "apisix", "base_path": "/apisix/discovery/zk"}`, ``},
		{`{"service": "orders", "ssl_port": true, "servers": ["10.0.0.1:2181", "10.0.0.2:2181"], "username": "u", "password": "s3cr3t-pass"}`, ``},
		{`{"service": "orders", "format": "dubbo", "ssl_port": true}`, ``},
		{`{"service": "a", "format": "eureka"}`, ``},
		{`{"service": "a/b"}`, ``},
		{`{"service": "a", "base_path": "services"}`, ``},
		{`{"service": "a", "servers": ["u:s3cr3t-pass@10.0.0.1:2181"]}`, ``},
		{`{"service": "a", "servers": ["10.0.0.1"]}`, ``},
		{`{"service": "a", "cert_file": "/c"}`, ``},
		{`{"service": "a", "password": "s3cr3t-pass"}`, ``},
		{`{"service": "a", "session_timeout": 1000}`, ``},
		{`{"service": "a", "server": "prod"}`, `{"servers": {"prod": {"servers": ["10.0.0.1:2181"], "username": "u", "password": "s3cr3t-pass"}}}`},
		{`{"service": "a", "server": "dev"}`, `{"servers": {"prod": {}}}`},
		{`{"service": "{re.svc.1}", "allow": ["shop-*"]}`, ``},
		{`{"service": "{env.HOME}", "password": "{env.P}", "username": "{env.U}"}`, ``},
	} {
		f.Add([]byte(s[0]), []byte(s[1]))
	}
	f.Fuzz(func(t *testing.T, source, appJSON []byte) {
		if strings.Contains(string(source)+string(appJSON), "file.") {
			return // {file.*} placeholders read files, which may block
		}
		u := new(ZooKeeperUpstreams)
		if err := caddy.StrictUnmarshalJSON(source, u); err != nil {
			return // encoding/json's own errors
		}
		check := func(err error) {
			t.Helper()
			msg := err.Error()
			if rest, ok := strings.CutPrefix(msg, "zookeeper server "); ok {
				if _, after, ok := strings.Cut(rest, `": `); ok {
					msg = after
				}
			}
			if !upstreamstest.NamesField(msg, sourceFields...) && !strings.Contains(msg, "is not defined in the zookeeper app") {
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
