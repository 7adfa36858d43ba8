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
	cfg := upstreamstest.Config{App: "zookeeper", Fields: sourceFields}
	f.Fuzz(func(t *testing.T, source, appJSON []byte) {
		if strings.Contains(string(source)+string(appJSON), "file.") {
			return // {file.*} placeholders read files, which may block
		}
		u := new(ZooKeeperUpstreams)
		if err := caddy.StrictUnmarshalJSON(source, u); err != nil {
			return // encoding/json's own errors
		}
		var app *App
		cfg.Check(t, upstreamstest.ConfigInput{
			JSON: source, Password: u.Password, Validate: u.Validate, Cleanup: u.Cleanup,
			App:       func() (err error) { app, err = upstreamstest.ProvisionApp[App](appJSON); return err },
			Provision: func() error { return u.provision(zap.NewNop(), app) },
		})
	})
}
