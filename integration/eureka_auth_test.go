//go:build integration

package integration

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/caddy-discovery/caddy-discovery/integration/harness"
	"github.com/caddy-discovery/caddy-discovery/upstreams"
)

// eurekaAuthPort is where the authenticating front of the Eureka API
// listens: the in-process Caddy, basic_auth then reverse_proxy to Polaris.
const eurekaAuthPort = 18093

// TestEurekaBasicAuth: Polaris's Eureka API has no authentication, so a
// real authenticating server stands in front of it: Caddy's own basic_auth
// handler (a bcrypt hash) reverse-proxying to Polaris's Eureka port, run by
// the test process. The Caddy under test is a separate caddy process (this
// working tree's build) with debug logging and its admin API, whose
// eureka app has three servers for that front: the right credentials, a
// wrong password, and none.
//
//   - right credentials (username and password): the application's
//     instances are served;
//   - a wrong password: the 401 is explained, in the admin dump and once in
//     the log, as "the server refused the credentials: check username and
//     password"; no credentials: "the server wants credentials: set
//     username and password";
//   - credentials in the URL are refused when the config loads, with the
//     password redacted (server.go supports username and password only);
//   - no password, as written or base64-encoded as in a Basic header,
//     appears in anything the process wrote or answered: its whole log
//     output, the admin dump (/discovery/upstreams), /metrics, the refused
//     /load's error, and the answers of the sites.
func TestEurekaBasicAuth(t *testing.T) {
	sharedPolaris(t)
	const user = "caddy"
	right, wrong, inURL := "eureka-right-Vb7Qx3", "eureka-wrong-Zt4Kp9", "eureka-url-Hq2Lm8"

	hash, err := bcrypt.GenerateFromPassword([]byte(right), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	harness.StartCaddy(t, eurekaAuthPort, fmt.Sprintf(`
		{"handler": "authentication", "providers": {"http_basic": {"hash": {"algorithm": "bcrypt"}, "accounts": [{"username": %q, "password": %q}]}}},
		{"handler": "reverse_proxy", "upstreams": [{"dial": "127.0.0.1:%d"}]}`, user, hash, sharedEurekaPort), "")
	front := fmt.Sprintf("http://127.0.0.1:%d/eureka", eurekaAuthPort)
	// The front answers 401 without the credentials, and proxies with them.
	for _, tc := range []struct {
		user, pass string
		want       int
	}{{"", "", http.StatusUnauthorized}, {user, wrong, http.StatusUnauthorized}, {user, right, http.StatusOK}} {
		req, _ := http.NewRequest(http.MethodGet, front+"/apps", nil)
		req.Header.Set("Accept", "application/json")
		if tc.user != "" {
			req.SetBasicAuth(tc.user, tc.pass)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Fatalf("GET %s/apps as %q: HTTP %d, want %d", front, tc.user, resp.StatusCode, tc.want)
		}
	}

	n := harness.NewNetns(t)
	x := n.AddAddr(t)
	n.Backend(t, "x", x, 8080)
	reg := newEurekaRegistrar(t, fmt.Sprintf("http://127.0.0.1:%d/eureka", sharedEurekaPort), "AUTH")
	reg.register("auth-x", x.String(), 8080)

	servers := map[string]any{
		"right": map[string]any{"urls": []string{front}, "username": user, "password": right, "refresh_interval": "1s"},
		"wrong": map[string]any{"urls": []string{front}, "username": user, "password": wrong, "refresh_interval": "1s"},
		"none":  map[string]any{"urls": []string{front}, "refresh_interval": "1s"},
	}
	routes := map[string]string{}
	for name := range servers {
		routes["/"+name+"*"] = fmt.Sprintf(`{"source": "eureka", "app": "auth", "server": %q}`, name)
	}
	eurekaApp := func(servers map[string]any) string {
		b, _ := json.Marshal(map[string]any{"servers": servers})
		return `"eureka": ` + string(b)
	}
	admin, site := freeAddr(t), freeAddr(t)
	config := metricsConfig(t, admin, site, routes, eurekaApp(servers))
	// debug logging: every line the source may write
	cfg, err := os.ReadFile(config)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(config, []byte(strings.Replace(string(cfg), `"level": "INFO"`, `"level": "DEBUG"`, 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	proc := harness.StartProcess(t, harness.BuildCaddy(t), config, admin)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("caddy's output:\n%s", proc.Output)
		}
	})

	var seen []leakOutput // everything the process answered; its log is added at the end
	get := func(path string) (int, string) {
		t.Helper()
		resp, err := http.Get("http://" + site + path)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		seen = append(seen, leakOutput{"GET " + path, fmt.Sprint(resp.Header) + string(body)})
		return resp.StatusCode, string(body)
	}
	adminGet := func(path string) string {
		t.Helper()
		code, body, err := proc.Request(http.MethodGet, path, "")
		if err != nil || code != http.StatusOK {
			t.Fatalf("GET %s: %d %v\n%s", path, code, err, body)
		}
		seen = append(seen, leakOutput{"admin " + path, body})
		return body
	}

	// Right credentials: the instance is served.
	start := time.Now()
	harness.Eventually(t, 15*time.Second, func() error {
		if code, body := get("/right"); code != http.StatusOK || body != "x" {
			return fmt.Errorf("GET /right: %d %q, want x", code, body)
		}
		return nil
	})
	t.Logf("eureka auth: with the right credentials, the instance was served within %v", time.Since(start).Round(time.Millisecond))

	// Wrong or no credentials: the dump says why.
	want := map[string]string{
		"wrong": fmt.Sprintf("eureka wrong: fetching %s/apps: HTTP 401 unauthorized: the server refused the credentials: check username and password", front),
		"none":  fmt.Sprintf("eureka none: fetching %s/apps: HTTP 401 unauthorized: the server wants credentials: set username and password", front),
	}
	harness.Eventually(t, 15*time.Second, func() error {
		// A fresh slice each poll: json.Unmarshal decodes into a reused
		// slice's elements without zeroing them, and an entry without an
		// error has no "error" key, so it would keep the error of the entry
		// at its index in the previous poll.
		var dump []upstreams.DumpEntry
		if err := json.Unmarshal([]byte(adminGet("/discovery/upstreams")), &dump); err != nil {
			return err
		}
		found := map[string]bool{}
		for _, e := range dump {
			if e.Source != "eureka" {
				continue
			}
			switch {
			case e.Error == "" && len(e.Upstreams) == 1 && e.Upstreams[0].Dial == x.String()+":8080":
				found["right"] = true
			case e.Error == want["wrong"] && len(e.Upstreams) == 0:
				found["wrong"] = true
			case e.Error == want["none"] && len(e.Upstreams) == 0:
				found["none"] = true
			}
		}
		if len(found) != 3 {
			return fmt.Errorf("the admin dump's eureka entries are %+v; want one serving %s:8080, and the errors\n%s\n%s", dump, x, want["wrong"], want["none"])
		}
		return nil
	})
	for _, path := range []string{"/wrong", "/none"} {
		if code, body := get(path); code < 500 {
			t.Errorf("GET %s: %d %q, want a 5xx (no upstreams)", path, code, body)
		}
	}
	t.Logf("eureka auth: a wrong password in the admin dump: %s", want["wrong"])
	if s := scrape(adminGet("/metrics")); s != "" {
		if v, ok, err := s.value("caddy_discovery_eureka_fetches_total", "connection", "wrong", "kind", "full", "result", "error"); err != nil || !ok || v < 1 {
			t.Errorf("caddy_discovery_eureka_fetches_total{connection=wrong,kind=full,result=error} = %v (found %v, %v), want at least 1", v, ok, err)
		}
		if v, ok, err := s.value("caddy_discovery_connected", "source", "eureka", "connection", "right"); err != nil || !ok || v != 1 {
			t.Errorf("caddy_discovery_connected{connection=right} = %v (found %v, %v), want 1", v, ok, err)
		}
	}

	// Credentials in the URL: the config is refused, the password
	// redacted; the running config stays.
	bad := map[string]any{"right": servers["right"], "inurl": map[string]any{"urls": []string{fmt.Sprintf("http://%s:%s@127.0.0.1:%d/eureka", user, inURL, eurekaAuthPort)}}}
	badRoutes := map[string]string{"/inurl*": `{"source": "eureka", "app": "auth", "server": "inurl"}`}
	badCfg, err := os.ReadFile(metricsConfig(t, admin, site, badRoutes, eurekaApp(bad)))
	if err != nil {
		t.Fatal(err)
	}
	code, body, err := proc.Request(http.MethodPost, "/load", string(badCfg))
	if err != nil {
		t.Fatal(err)
	}
	seen = append(seen, leakOutput{"POST /load", body})
	if code == http.StatusOK || !strings.Contains(body, "holds credentials; set username and password separately instead") {
		t.Errorf("POST /load with credentials in a URL: %d %s; want it refused, saying to set username and password", code, body)
	}
	t.Logf("eureka auth: credentials in a URL: %s", strings.TrimSpace(body))
	if code, body := get("/right"); code != http.StatusOK || body != "x" {
		t.Errorf("after the refused load, GET /right: %d %q, want x", code, body)
	}

	// The log: the problem of each refused connection once, at error level.
	time.Sleep(3 * time.Second) // a few more polls, failing the same way
	log := proc.Output.String()
	for _, name := range []string{"wrong", "none"} {
		var lines []string
		for _, l := range logLines(log, "eureka connection problem") {
			if strings.Contains(l, want[name]) {
				lines = append(lines, l)
			}
		}
		if len(lines) != 1 || !strings.Contains(lines[0], `"level":"error"`) {
			t.Errorf("server %s: %d error lines %q in the log, want one:\n%s", name, len(lines), want[name], strings.Join(lines, "\n"))
		}
	}
	seen = append(seen, leakOutput{"caddy's output (log, debug level)", log})

	for _, pw := range []string{right, wrong, inURL} {
		forms := map[string]string{
			"as written":        pw,
			"base64":            base64.StdEncoding.EncodeToString([]byte(pw)),
			"in a Basic header": base64.StdEncoding.EncodeToString([]byte(user + ":" + pw)),
		}
		for _, out := range seen {
			for form, s := range forms {
				if strings.Contains(out.text, s) {
					t.Errorf("a password (%s) appears in %s", form, out.where)
				}
			}
		}
	}
}
