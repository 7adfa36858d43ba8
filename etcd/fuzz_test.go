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
	cfg := upstreamstest.Config{App: "etcd", Fields: sourceFields}
	f.Fuzz(func(t *testing.T, source, appJSON []byte) {
		if strings.Contains(string(source)+string(appJSON), "file.") {
			return // {file.*} placeholders read files, which may block
		}
		u := new(EtcdUpstreams)
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
