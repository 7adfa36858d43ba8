package integration

import (
	"fmt"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
)

// TestValidateJSON runs `caddy validate`'s code path on k8s and nacos JSON configs: bad
// input is refused with an error naming the field, good input passes without
// contacting any registry: every server address in these configs is a
// listener that counts the connections it is offered, and must count none.
func TestValidateJSON(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var contacts atomic.Int32
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			contacts.Add(1)
			c.Close()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		if n := contacts.Load(); n != 0 {
			t.Errorf("validate contacted the registry address %d times; it must not touch the network", n)
		}
	})
	registry := ln.Addr().String()
	for _, tc := range []struct {
		name    string
		source  string
		apps    string
		wantErr string // "" for a valid config
	}{
		{"numeric port", `"service": "shop/web", "port": 8080, "server": "https://127.0.0.1:1"`, "", ""},
		{"string port", `"service": "shop/web", "port": "8080", "server": "https://127.0.0.1:1"`, "", ""},
		{"dns name", `"service": "web.shop.svc.cluster.local:http", "server": "https://127.0.0.1:1"`, "", ""},
		{"env placeholder", `"service": "{env.CD_TEST_SERVICE}", "server": "{env.CD_TEST_SERVER}", "token": "{env.CD_TEST_TOKEN}"`, "", ""},
		{"named cluster", `"service": "east/shop/web:http"`, `"k8s": {"clusters": {"east": {"server": "https://127.0.0.1:1"}}}`, ""},
		{"unknown field", `"service": "shop/web", "namespace": "shop"`, "", `unknown field "namespace"`},
		{"bad port type", `"service": "shop/web", "port": true`, "", "port must be a name"},
		{"name only", `"service": "web:http", "server": "https://127.0.0.1:1"`, "", ""},
		{"bad reference", `"service": "web.shop.cluster.local"`, "", "service: service reference \"web.shop.cluster.local\": expected name.namespace.svc"},
		{"missing service", `"server": "https://127.0.0.1:1"`, "", "service: required"},
		{"bad target", `"service": "shop/web", "target": "pods"`, "", `target: unknown target "pods"; use endpoints, cluster_ip or node_port`},
		{"token and token_file", `"service": "shop/web", "server": "https://127.0.0.1:1", "token": "x", "token_file": "/t"`, "", "token and token_file are both set"},
		{"unknown cluster", `"service": "west/shop/web"`, `"k8s": {"clusters": {"east": {"server": "https://127.0.0.1:1"}}}`, `cluster "west" is not defined in the k8s app; defined clusters: [east]`},
		{"server not a url", `"service": "shop/web", "server": "127.0.0.1:6443"`, "", `server "127.0.0.1:6443" is not a URL`},
		{"missing ca_file", `"service": "shop/web", "server": "https://127.0.0.1:1", "ca_file": "/nonexistent/ca.crt"`, "", "ca_file: stat /nonexistent/ca.crt"},
		{"unknown app field", `"service": "shop/web"`, `"k8s": {"cluster": {}}`, `unknown field "cluster"`},
		{"unused cluster with token and token_file", `"service": "shop/web", "server": "https://127.0.0.1:1"`,
			`"k8s": {"clusters": {"spare": {"server": "https://127.0.0.1:1", "token": "x", "token_file": "/t"}}}`, "clusters: spare: token and token_file are both set"},

		// Nacos: an unreachable address is fine at validate time.
		{"nacos", `"source": "nacos", "service": "prod/SHOP/shop-api", "addresses": ["127.0.0.1:1"]`, "", ""},
		{"nacos grouped", `"source": "nacos", "service": "SHOP@@shop-api", "metadata": {"version": "v2"}, "clusters": ["hz"]`, "", ""},
		{"nacos named server", `"source": "nacos", "service": "shop-api", "server": "prod"`, `"nacos": {"servers": {"prod": {"addresses": ["127.0.0.1:1"], "username": "u", "password": "{env.CD_TEST_TOKEN}"}}}`, ""},
		{"nacos unknown server", `"source": "nacos", "service": "shop-api", "server": "dev"`, `"nacos": {"servers": {"prod": {"addresses": ["127.0.0.1:1"]}}}`, `"dev" is not defined in the nacos app`},
		{"nacos empty service", `"source": "nacos", "service": ""`, "", "service: required"},
		{"nacos bad address", `"source": "nacos", "service": "shop-api", "addresses": ["ftp://x"]`, "", "addresses:"},
		{"nacos half credentials", `"source": "nacos", "service": "shop-api", "username": "u"`, "", "username and password go together"},
		{"nacos bad threshold", `"source": "nacos", "service": "shop-api", "protect_threshold": 2`, "", "protect_threshold"},
		{"nacos unknown field", `"source": "nacos", "service": "shop-api", "group_name": "x"`, "", `unknown field "group_name"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("CD_TEST_SERVICE", "shop/web:http")
			t.Setenv("CD_TEST_SERVER", "https://"+registry)
			t.Setenv("CD_TEST_TOKEN", "secret")
			source := strings.ReplaceAll(tc.source, "127.0.0.1:1", registry)
			tc.apps = strings.ReplaceAll(tc.apps, "127.0.0.1:1", registry)
			if !strings.Contains(source, `"source"`) {
				source = `"source": "k8s", ` + source
			}
			apps := ""
			if tc.apps != "" {
				apps = "," + tc.apps
			}
			cfg := fmt.Sprintf(`{"admin": {"disabled": true}, "apps": {"http": {"servers": {"s": {"listen": ["127.0.0.1:0"], "routes": [{"handle": [
				{"handler": "reverse_proxy", "dynamic_upstreams": {%s}}]}]}}}%s}}`, source, apps)
			var c caddy.Config
			if err := caddy.StrictUnmarshalJSON([]byte(cfg), &c); err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			err := caddy.Validate(&c)
			if took := time.Since(start); took > 5*time.Second {
				t.Errorf("validate took %v: it must not wait on a registry", took)
			}
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("validate: %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("validate error = %v, want it to contain %q", err, tc.wantErr)
			case err != nil && strings.Contains(err.Error(), "secret"):
				t.Fatalf("validate error shows a secret: %v", err)
			}
		})
	}
}
