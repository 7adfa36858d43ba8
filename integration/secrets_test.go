//go:build integration

package integration

import (
	"context"
	"crypto/sha1"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/caddy-discovery/caddy-discovery/integration/harness"
)

// leakSecrets gives every secret-bearing field of every source a distinct
// secret: the field it went into names it in a failure.
var leakSecrets = map[string]string{
	"k8s token":                        "k8stoken-Q7f3Lq",
	"k8s token from {env}":             "k8senvtoken-R2m8Wd",
	"k8s token_file":                   "k8stokenfile-T5n1Xa",
	"k8s app cluster token":            "k8sapptoken-U9c4Yb",
	"k8s token of a hung server":       "k8shungtoken-V3b7Zc",
	"k8s token of an unreachable one":  "k8sdowntoken-W6v2Ad",
	"kubeconfig token":                 "kubecfgtoken-X1z5Be",
	"kubeconfig password":              "kubecfgpass-Y4x9Cf",
	"kubeconfig client key":            "kubecfgkey-Z8w3Dg",
	"k8s server URL password":          "k8surlpass-A2s6Eh",
	"k8s Caddyfile token":              "k8scftoken-B5d1Fi",
	"nacos password":                   "nacospass-C9g4Gj",
	"nacos password from {env}":        "nacosenvpass-D3h8Hk",
	"nacos access_key":                 "nacosak-E7j2Il",
	"nacos secret_key":                 "nacossk-F1k6Jm",
	"nacos app server password":        "nacosapppass-G4l9Kn",
	"nacos password of a hung server":  "nacoshungpass-H8p3Lo",
	"nacos password of a down server":  "nacosdownpass-I2q7Mp",
	"nacos address password":           "nacosurlpass-J6r1Nq",
	"nacos Caddyfile password":         "nacoscfpass-K9t5Or",
	"etcd password":                    "etcdpass-L3u8Ps",
	"etcd password from {env}":         "etcdenvpass-M7v2Qt",
	"etcd app server password":         "etcdapppass-N1w6Ru",
	"etcd password of a hung server":   "etcdhungpass-O5x9Sv",
	"etcd password of a down server":   "etcddownpass-P9y3Tw",
	"etcd endpoint URL password":       "etcdurlpass-Q2z7Ux",
	"etcd Caddyfile password":          "etcdcfpass-R6a1Vy",
	"etcd key_file":                    "etcdkeyfile-S4b5Wz",
	"zookeeper password":               "zkpass-T8c9Xa",
	"zookeeper password from {env}":    "zkenvpass-U3d2Yb",
	"zookeeper app server password":    "zkapppass-V7e6Zc",
	"zookeeper password of a hung one": "zkhungpass-W1f4Ad",
	"zookeeper password of a down one": "zkdownpass-X5g8Be",
	"zookeeper server password":        "zkurlpass-Y9h3Cf",
	"zookeeper Caddyfile password":     "zkcfpass-Z2i7Dg",
	"zookeeper key_file":               "zkkeyfile-A6j1Eh",
	"password with braces":             "pwbrace-B3k7Fi",
	"address with braces":              "addrbrace-C8m2Gj",
}

// TestSecretsNeverLeave sets a distinct secret in every secret-bearing field
// of the k8s, nacos, etcd and zookeeper sources and drives every path that
// can print them through a real Caddy process with debug logging on, against
// the real API server, Nacos-protocol server, etcd (authentication on) and
// ZooKeeper (a digest ACL), a hung server and an unreachable one of each:
// Caddyfile adapt errors, validate errors (a TLS key file that is no key
// among them), /load over the admin API (refused and accepted), refused
// credentials (401, 403, Nacos auth, etcd's wrong password, ZooKeeper's ACL),
// reloads, requests that fail over to the sources' errors, the admin dump
// and /metrics. It
// collects everything Caddy wrote or answered and fails on any secret found,
// as written or base64-encoded (as in a Basic or bearer header).
func TestSecretsNeverLeave(t *testing.T) {
	k := sharedKube(t)
	p := sharedPolaris(t)
	bin := harness.BuildCaddy(t)
	dir := t.TempDir()
	s := leakSecrets
	var seen []leakOutput // everything Caddy printed or answered
	collect := func(where, text string) { seen = append(seen, leakOutput{where, text}) }

	// A hung server: accepts connections and never answers, for the API
	// server and for Nacos's HTTP and gRPC ports.
	hungK8s := hungListener(t)
	hungNacos := hungNacosPorts(t)
	hungEtcd := hungListener(t)
	hungZK := hungListener(t)

	// etcd with authentication on (a root and a reader of shop/), and
	// ZooKeeper with a node readable by one digest user alone: the wrong
	// passwords the routes below give are refused.
	e := startEtcd(t)
	ctx := context.Background()
	for _, step := range []func() error{
		func() error { _, err := e.cli.UserAdd(ctx, "root", "etcd-root-pw"); return err },
		func() error { _, err := e.cli.UserGrantRole(ctx, "root", "root"); return err },
		func() error { _, err := e.cli.UserAdd(ctx, "caddy", "etcd-caddy-pw"); return err },
		func() error { _, err := e.cli.AuthEnable(ctx); return err },
	} {
		if err := step(); err != nil {
			t.Fatal(err)
		}
	}
	z := startZooKeeper(t)
	if err := z.conn.AddAuth("digest", []byte("orders:zk-orders-pw")); err != nil {
		t.Fatal(err)
	}
	z.create(t, "/secure/orders", nil, 0)
	if _, err := z.conn.SetACL("/secure/orders", zk.DigestACL(zk.PermAll, "orders", "zk-orders-pw"), -1); err != nil {
		t.Fatal(err)
	}

	write := func(name, content string) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	tokenFile := write("token", s["k8s token_file"]+"\n")
	restrictedFile := write("restricted-token", k.RestrictedToken+"\n") // a real token: 403
	kubeconfigToken := write("kubeconfig-token", kubeconfig(k.Server, k.CAFile, fmt.Sprintf("{token: %q}", s["kubeconfig token"])))
	kubeconfigBasic := write("kubeconfig-basic", kubeconfig(k.Server, k.CAFile, fmt.Sprintf("{username: leakuser, password: %q}", s["kubeconfig password"])))
	kubeconfigKey := write("kubeconfig-key", kubeconfig(k.Server, k.CAFile, fmt.Sprintf("{client-certificate-data: %s, client-key-data: %s}",
		base64.StdEncoding.EncodeToString([]byte("not a certificate")), base64.StdEncoding.EncodeToString([]byte(s["kubeconfig client key"])))))
	// A TLS key file that holds a secret but no key, beside a certificate
	// that is none either: Provision refuses them.
	notCert := write("not-a-cert.pem", "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n")
	notKey := func(source string) string {
		return write(source+"-key.pem", "-----BEGIN PRIVATE KEY-----\n"+s[source+" key_file"]+"\n-----END PRIVATE KEY-----\n")
	}
	badKubeconfig := write("kubeconfig-bad", fmt.Sprintf("apiVersion: v1\nkind: Config\nusers:\n- name: u\n  user:\n    token: [%s]\n  bad indent: %s\n",
		s["kubeconfig token"], s["kubeconfig password"]))

	// 1. caddy adapt: Caddyfiles with secrets in lines it refuses.
	for name, caddyfile := range map[string]string{
		"nacos address with credentials":    fmt.Sprintf(":8080 {\n reverse_proxy {\n  dynamic nacos shop {\n   addresses http://nacos:%s@127.0.0.1:8848/nacos\n  }\n }\n}\n", s["nacos address password"]),
		"nacos password with a space":       fmt.Sprintf(":8080 {\n reverse_proxy {\n  dynamic nacos shop {\n   username nacos\n   password my %s\n  }\n }\n}\n", s["nacos Caddyfile password"]),
		"nacos global address":              fmt.Sprintf("{\n nacos {\n  server prod {\n   addresses nacos:%s@127.0.0.1:8848\n  }\n }\n}\n:8080 {\n reverse_proxy {\n  dynamic nacos shop {\n   server prod\n  }\n }\n}\n", s["nacos address password"]),
		"k8s server with credentials":       fmt.Sprintf(":8080 {\n reverse_proxy {\n  dynamic k8s shop/web:http {\n   server https://admin:%s@127.0.0.1:6443\n  }\n }\n}\n", s["k8s server URL password"]),
		"k8s token with a space":            fmt.Sprintf(":8080 {\n reverse_proxy {\n  dynamic k8s shop/web:http {\n   server https://127.0.0.1:6443\n   token Bearer %s\n  }\n }\n}\n", s["k8s Caddyfile token"]),
		"etcd endpoint with credentials":    fmt.Sprintf(":8080 {\n reverse_proxy {\n  dynamic etcd shop {\n   endpoints http://root:%s@127.0.0.1:2379\n  }\n }\n}\n", s["etcd endpoint URL password"]),
		"etcd password with a space":        fmt.Sprintf(":8080 {\n reverse_proxy {\n  dynamic etcd shop {\n   username caddy\n   password my %s\n  }\n }\n}\n", s["etcd Caddyfile password"]),
		"zookeeper server with credentials": fmt.Sprintf(":8080 {\n reverse_proxy {\n  dynamic zookeeper orders {\n   servers orders:%s@127.0.0.1:2181\n  }\n }\n}\n", s["zookeeper server password"]),
		"zookeeper password with a space":   fmt.Sprintf(":8080 {\n reverse_proxy {\n  dynamic zookeeper orders {\n   username orders\n   password my %s\n  }\n }\n}\n", s["zookeeper Caddyfile password"]),
	} {
		out, err := exec.Command(bin, "adapt", "--config", write("Caddyfile", caddyfile), "--adapter", "caddyfile").CombinedOutput()
		if err == nil {
			t.Errorf("caddy adapt accepted the %s:\n%s", name, out)
		}
		collect("caddy adapt, "+name, string(out))
	}

	// 2. caddy validate: JSON configs it refuses.
	for name, source := range map[string]string{
		"nacos address with credentials":    fmt.Sprintf(`{"source": "nacos", "service": "shop", "addresses": ["http://nacos:%s@127.0.0.1:8848/nacos"]}`, s["nacos address password"]),
		"nacos address, no scheme":          fmt.Sprintf(`{"source": "nacos", "service": "shop", "addresses": ["nacos:%s@127.0.0.1:8848"]}`, s["nacos address password"]),
		"nacos bad URL with credentials":    fmt.Sprintf(`{"source": "nacos", "service": "shop", "addresses": ["http://nacos:%s%%zz@127.0.0.1:8848"]}`, s["nacos address password"]),
		"nacos half credentials":            fmt.Sprintf(`{"source": "nacos", "service": "shop", "password": %q}`, s["nacos password"]),
		"k8s server with credentials":       fmt.Sprintf(`{"source": "k8s", "service": "shop/web:http", "server": "https://admin:%s@127.0.0.1:6443"}`, s["k8s server URL password"]),
		"k8s token without server":          fmt.Sprintf(`{"source": "k8s", "service": "shop/web:http", "token": %q}`, s["k8s token"]),
		"k8s malformed kubeconfig":          fmt.Sprintf(`{"source": "k8s", "service": "shop/web:http", "kubeconfig": %q}`, badKubeconfig),
		"kubeconfig with a bad key":         fmt.Sprintf(`{"source": "k8s", "service": "shop/web:http", "kubeconfig": %q}`, kubeconfigKey),
		"etcd endpoint with credentials":    fmt.Sprintf(`{"source": "etcd", "service": "shop", "endpoints": ["https://root:%s@127.0.0.1:2379"]}`, s["etcd endpoint URL password"]),
		"etcd half credentials":             fmt.Sprintf(`{"source": "etcd", "service": "shop", "password": %q}`, s["etcd password"]),
		"etcd key_file that is no key":      fmt.Sprintf(`{"source": "etcd", "service": "shop", "endpoints": ["https://127.0.0.1:2379"], "cert_file": %q, "key_file": %q}`, notCert, notKey("etcd")),
		"zookeeper server with credentials": fmt.Sprintf(`{"source": "zookeeper", "service": "orders", "servers": ["orders:%s@127.0.0.1:2181"]}`, s["zookeeper server password"]),
		"zookeeper half credentials":        fmt.Sprintf(`{"source": "zookeeper", "service": "orders", "password": %q}`, s["zookeeper password"]),
		"zookeeper key_file that is no key": fmt.Sprintf(`{"source": "zookeeper", "service": "orders", "tls": true, "cert_file": %q, "key_file": %q}`, notCert, notKey("zookeeper")),
		"password with braces":              fmt.Sprintf(`{"source": "zookeeper", "service": "orders", "username": "orders", "password": "x{%s}y"}`, s["password with braces"]),
		"address with braces":               fmt.Sprintf(`{"source": "nacos", "service": "shop", "addresses": ["http://nacos:{%s}@127.0.0.1:8848"]}`, s["address with braces"]),
	} {
		out, err := exec.Command(bin, "validate", "--config", write("bad.json", leakConfig("127.0.0.1:1", "127.0.0.1:0", map[string]string{"/": source}, ""))).CombinedOutput()
		if err == nil {
			t.Errorf("caddy validate accepted the %s:\n%s", name, out)
		}
		collect("caddy validate, "+name, string(out))
	}

	// 3. A running Caddy whose sources use every secret: refused, hung and
	// unreachable servers; requests fall back on the sources' errors.
	nacosAt := func(addr string, extra string) string {
		return fmt.Sprintf(`{"source": "nacos", "service": "leak", "addresses": [%q], "timeout": "2s"%s}`, addr, extra)
	}
	polaris := fmt.Sprintf("127.0.0.1:%d", p.port)
	etcdAt := func(addr, password string) string {
		return fmt.Sprintf(`{"source": "etcd", "service": "shop", "endpoints": [%q], "dial_timeout": "2s", "username": "caddy", "password": %q}`, addr, password)
	}
	zkAt := func(addr, password string) string {
		return fmt.Sprintf(`{"source": "zookeeper", "service": "orders", "base_path": "/secure", "servers": [%q], "session_timeout": "2s", "username": "orders", "password": %q}`, addr, password)
	}
	routes := map[string]string{
		"/k8s-token":      fmt.Sprintf(`{"source": "k8s", "service": "leak/web:http", "server": %q, "ca_file": %q, "token": %q}`, k.Server, k.CAFile, s["k8s token"]),
		"/k8s-env-token":  fmt.Sprintf(`{"source": "k8s", "service": "leak/web:http", "server": %q, "ca_file": %q, "token": "{env.CD_LEAK_K8S_TOKEN}"}`, k.Server, k.CAFile),
		"/k8s-token-file": fmt.Sprintf(`{"source": "k8s", "service": "leak/web:http", "server": %q, "ca_file": %q, "token_file": %q}`, k.Server, k.CAFile, tokenFile),
		"/k8s-403":        fmt.Sprintf(`{"source": "k8s", "service": "leak/web:http", "server": %q, "ca_file": %q, "token_file": %q}`, k.Server, k.CAFile, restrictedFile),
		"/k8s-app":        `{"source": "k8s", "service": "east/leak/web:http"}`,
		"/k8s-kubeconfig": fmt.Sprintf(`{"source": "k8s", "service": "leak/web:http", "kubeconfig": %q}`, kubeconfigToken),
		"/k8s-basic":      fmt.Sprintf(`{"source": "k8s", "service": "leak/web:http", "kubeconfig": %q}`, kubeconfigBasic),
		"/k8s-hung":       fmt.Sprintf(`{"source": "k8s", "service": "leak/web:http", "server": "https://%s", "insecure_skip_verify": true, "token": %q}`, hungK8s, s["k8s token of a hung server"]),
		"/k8s-down":       fmt.Sprintf(`{"source": "k8s", "service": "leak/web:http", "server": "https://127.0.0.1:1", "insecure_skip_verify": true, "token": %q}`, s["k8s token of an unreachable one"]),
		"/nacos-login":    nacosAt(polaris, fmt.Sprintf(`, "username": "nacos", "password": %q`, s["nacos password"])),
		"/nacos-env":      nacosAt(polaris, `, "username": "nacos", "password": "{env.CD_LEAK_NACOS_PASSWORD}"`),
		"/nacos-ak":       nacosAt(polaris, fmt.Sprintf(`, "access_key": %q, "secret_key": %q`, s["nacos access_key"], s["nacos secret_key"])),
		"/nacos-app":      `{"source": "nacos", "service": "leak", "server": "prod"}`,
		"/nacos-hung":     nacosAt(hungNacos, fmt.Sprintf(`, "username": "nacos", "password": %q`, s["nacos password of a hung server"])),
		"/nacos-down":     nacosAt("127.0.0.1:1", fmt.Sprintf(`, "grpc_port": 2, "username": "nacos", "password": %q`, s["nacos password of a down server"])),
		"/etcd-login":     etcdAt(e.addr, s["etcd password"]),
		"/etcd-env":       etcdAt(e.addr, "{env.CD_LEAK_ETCD_PASSWORD}"),
		"/etcd-app":       `{"source": "etcd", "service": "shop", "server": "prod"}`,
		"/etcd-hung":      etcdAt(hungEtcd, s["etcd password of a hung server"]),
		"/etcd-down":      etcdAt("127.0.0.1:1", s["etcd password of a down server"]),
		"/zk-login":       zkAt(z.addr, s["zookeeper password"]),
		"/zk-env":         zkAt(z.addr, "{env.CD_LEAK_ZK_PASSWORD}"),
		"/zk-app":         `{"source": "zookeeper", "service": "orders", "base_path": "/secure", "server": "prod"}`,
		"/zk-hung":        zkAt(hungZK, s["zookeeper password of a hung one"]),
		"/zk-down":        zkAt("127.0.0.1:1", s["zookeeper password of a down one"]),
	}
	apps := fmt.Sprintf(`"k8s": {"clusters": {"east": {"server": %q, "ca_file": %q, "token": %q}}},
		"nacos": {"servers": {"prod": {"addresses": [%q], "username": "nacos", "password": %q, "timeout": "2s"}}},
		"etcd": {"servers": {"prod": {"endpoints": [%q], "username": "caddy", "password": %q}}},
		"zookeeper": {"servers": {"prod": {"servers": [%q], "username": "orders", "password": %q}}}`,
		k.Server, k.CAFile, s["k8s app cluster token"], polaris, s["nacos app server password"],
		e.addr, s["etcd app server password"], z.addr, s["zookeeper app server password"])
	admin := freeAddr(t)
	site := freeAddr(t)
	good := leakConfig(admin, site, routes, apps)
	proc := harness.StartProcess(t, bin, write("caddy.json", good), admin,
		"CD_LEAK_K8S_TOKEN="+s["k8s token from {env}"], "CD_LEAK_NACOS_PASSWORD="+s["nacos password from {env}"],
		"CD_LEAK_ETCD_PASSWORD="+s["etcd password from {env}"], "CD_LEAK_ZK_PASSWORD="+s["zookeeper password from {env}"])

	get := func(path string) {
		resp, err := http.Get("http://" + site + path)
		if err != nil {
			collect("request "+path, err.Error())
			return
		}
		body := make([]byte, 1<<16)
		n, _ := resp.Body.Read(body)
		resp.Body.Close()
		collect("request "+path, string(body[:n]))
	}
	paths := slices.Sorted(maps.Keys(routes))
	// Until the refusals have been explained (401, 403) and the hung and
	// unreachable servers have timed out, with requests meanwhile.
	deadline := time.Now().Add(40 * time.Second)
	for {
		for _, path := range paths {
			get(path)
		}
		out := proc.Output.String()
		done := strings.Contains(out, "401 Unauthorized") && strings.Contains(out, "403 Forbidden") &&
			strings.Contains(out, "TLS handshake timeout") && strings.Contains(out, "the user name or password is wrong") &&
			strings.Contains(out, "does not let Caddy read it") && time.Until(deadline) < 25*time.Second
		if done || time.Now().After(deadline) {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}

	// /load: refused configs (their error comes back and is logged), then
	// reloads of the good config, forced and with a route less.
	for name, source := range map[string]string{
		"nacos address with credentials": fmt.Sprintf(`{"source": "nacos", "service": "shop", "addresses": ["http://nacos:%s@127.0.0.1:8848/nacos"]}`, s["nacos address password"]),
		"k8s server with credentials":    fmt.Sprintf(`{"source": "k8s", "service": "shop/web:http", "server": "https://admin:%s@127.0.0.1:6443"}`, s["k8s server URL password"]),
		"etcd endpoint with credentials": fmt.Sprintf(`{"source": "etcd", "service": "shop", "endpoints": ["http://root:%s@127.0.0.1:2379"]}`, s["etcd endpoint URL password"]),
		"zookeeper key_file, no key":     fmt.Sprintf(`{"source": "zookeeper", "service": "orders", "tls": true, "cert_file": %q, "key_file": %q}`, notCert, notKey("zookeeper")),
	} {
		bad := leakConfig(admin, site, map[string]string{"/": source}, "")
		code, body, err := proc.Request(http.MethodPost, "/load", bad)
		if err != nil || code != http.StatusBadRequest {
			t.Errorf("POST /load of a config with the %s: %d %v, want 400", name, code, err)
		}
		collect("POST /load, "+name, body)
	}
	fewer := maps.Clone(routes)
	delete(fewer, "/nacos-ak")
	delete(fewer, "/k8s-basic")
	delete(fewer, "/etcd-env")
	delete(fewer, "/zk-app")
	for i, cfg := range []string{good, leakConfig(admin, site, fewer, apps), good} {
		code, body, err := proc.Request(http.MethodPost, "/load", cfg, "Cache-Control", "must-revalidate")
		if err != nil || code != http.StatusOK {
			t.Errorf("reload %d: %d %v %s", i, code, err, body)
		}
		collect(fmt.Sprintf("POST /load, reload %d", i), body)
		for _, path := range paths {
			get(path)
		}
	}
	time.Sleep(3 * time.Second) // the reloaded sources fail again meanwhile
	for _, path := range paths {
		get(path)
	}

	for _, path := range []string{"/discovery/upstreams", "/metrics"} {
		code, body, err := proc.Request(http.MethodGet, path, "")
		if err != nil || code != http.StatusOK {
			t.Errorf("GET %s: %d %v", path, code, err)
		}
		collect("GET "+path, body)
	}
	proc.Stop(t)
	collect("caddy run output (debug log)", proc.Output.String())
	if t.Failed() {
		out := proc.Output.String()
		t.Logf("the last 4 KB caddy printed:\n%s", out[max(0, len(out)-4096):])
	}

	// The paths must have been driven: each refusal and failure explained.
	out := proc.Output.String()
	for _, want := range []string{
		"401 Unauthorized", "403 Forbidden", "TLS handshake timeout", "connection refused",
		"nacos connection problem", `"level":"debug"`, `"logger":"nacos.sdk"`, "login in err",
		"the user name or password is wrong", "cannot reach etcd", "does not let Caddy read it", "cannot reach zookeeper",
		`"logger":"zookeeper.client"`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("caddy's output lacks %q: a path the test drives did not run", want)
		}
	}

	leaks := 0
	for field, secret := range s {
		forms := map[string]string{
			"as written":         secret,
			"base64":             base64.StdEncoding.EncodeToString([]byte(secret)),
			"in a Basic header":  base64.StdEncoding.EncodeToString([]byte("leakuser:" + secret)),
			"in a nacos header":  base64.StdEncoding.EncodeToString([]byte("nacos:" + secret)),
			"base64, unpadded":   base64.RawStdEncoding.EncodeToString([]byte(secret)),
			"base64url":          base64.URLEncoding.EncodeToString([]byte(secret)),
			"base64url, Basic":   base64.URLEncoding.EncodeToString([]byte("leakuser:" + secret)),
			"base64url, unpadd.": base64.RawURLEncoding.EncodeToString([]byte(secret)),
			"as a zk digest":     zkDigest("orders", secret),
		}
		for form, needle := range forms {
			for _, o := range seen {
				if i := strings.Index(o.text, needle); i >= 0 {
					leaks++
					t.Errorf("the %s (%s) appears in %s: ...%s...", field, form, o.where, excerpt(o.text, i, len(needle)))
				}
			}
		}
	}
	// The real token of the 403 path is a secret too.
	for _, o := range seen {
		if i := strings.Index(o.text, k.RestrictedToken); i >= 0 {
			leaks++
			t.Errorf("the restricted service account's token appears in %s: ...%s...", o.where, excerpt(o.text, i, len(k.RestrictedToken)))
		}
	}
	size := 0
	for _, o := range seen {
		size += len(o.text)
	}
	t.Logf("searched %d outputs (%d KB) for %d secrets in 9 encodings: %d found", len(seen), size/1024, len(s)+1, leaks)
}

type leakOutput struct{ where, text string }

// zkDigest is the digest ZooKeeper's digest scheme makes of a user's
// password (DigestAuthenticationProvider), as an ACL holds it.
func zkDigest(user, password string) string {
	sum := sha1.Sum([]byte(user + ":" + password))
	return base64.StdEncoding.EncodeToString(sum[:])
}

// excerpt is the text around a found secret, on one line.
func excerpt(text string, i, n int) string {
	from, to := max(0, i-120), min(len(text), i+n+40)
	return strings.ReplaceAll(text[from:to], "\n", `\n`)
}

// leakConfig is a Caddy config with the admin API at admin, debug logging to
// stderr, and a server on site with one reverse_proxy route per path with
// the given dynamic upstream source.
func leakConfig(admin, site string, routes map[string]string, apps string) string {
	var rs []string
	for _, path := range slices.Sorted(maps.Keys(routes)) {
		rs = append(rs, fmt.Sprintf(`{"match": [{"path": [%q]}], "handle": [{"handler": "reverse_proxy", "dynamic_upstreams": %s}]}`, path, routes[path]))
	}
	if apps != "" {
		apps = "," + apps
	}
	cfg := fmt.Sprintf(`{
		"admin": {"listen": %q},
		"logging": {"logs": {"default": {"level": "DEBUG", "writer": {"output": "stderr"}, "encoder": {"format": "json"}}}},
		"apps": {
			"http": {"servers": {"leak": {"listen": [%q], "automatic_https": {"disable": true}, "routes": [%s]}}}%s
		}
	}`, admin, site, strings.Join(rs, ","), apps)
	var v any
	if err := json.Unmarshal([]byte(cfg), &v); err != nil {
		panic(fmt.Sprintf("leakConfig made invalid JSON: %v\n%s", err, cfg))
	}
	return cfg
}

// kubeconfig is a kubeconfig for server with the given user (YAML flow map).
func kubeconfig(server, caFile, user string) string {
	return fmt.Sprintf(`apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: %q, certificate-authority: %q}}]
users: [{name: u, user: %s}]
contexts: [{name: x, context: {cluster: c, user: u}}]
current-context: x
`, server, caFile, user)
}

// freeAddr is a free 127.0.0.1 port, as host:port.
func freeAddr(t testing.TB) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// hungListener accepts connections on 127.0.0.1 and never answers them, like
// a server that hangs; it returns its address.
func hungListener(t testing.TB) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hang(t, ln)
	return ln.Addr().String()
}

// hungNacosPorts is a hung Nacos server: its HTTP port and its gRPC port (the
// HTTP port + 1000) accept connections and never answer. It returns the HTTP
// address.
func hungNacosPorts(t testing.TB) string {
	for port := 31000; port < 32000; port++ {
		httpLn, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			continue
		}
		grpcLn, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port+1000))
		if err != nil {
			httpLn.Close()
			continue
		}
		hang(t, httpLn)
		hang(t, grpcLn)
		return httpLn.Addr().String()
	}
	t.Fatal("no free pair of ports for a hung Nacos server")
	return ""
}

func hang(t testing.TB, ln net.Listener) {
	var conns []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns = append(conns, c) // held open, never read or written
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
		for _, c := range conns {
			c.Close()
		}
	})
}
