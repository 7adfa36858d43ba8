//go:build integration

package integration

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nacos-group/nacos-sdk-go/v2/clients"
	"github.com/nacos-group/nacos-sdk-go/v2/clients/naming_client"
	"github.com/nacos-group/nacos-sdk-go/v2/common/constant"
	"github.com/nacos-group/nacos-sdk-go/v2/vo"

	"github.com/caddy-discovery/caddy-discovery/integration/harness"
)

// The Nacos port of the login test's own server (gRPC +1000, Polaris's own
// gRPC +2000).
const nacosAuthPort = 11848

// The user that start-polaris.sh's POLARIS_NACOS_AUTH=1 server knows:
// Polaris's built-in account.
const polarisUser, polarisPassword = "polaris", "polaris"

// loginClient is an SDK naming client that logs in as user (none if "").
func loginClient(t testing.TB, p *polaris, user, password string) naming_client.INamingClient {
	t.Helper()
	dir := t.TempDir()
	c, err := clients.NewNamingClient(vo.NacosClientParam{
		ClientConfig: &constant.ClientConfig{
			Username: user, Password: password, TimeoutMs: 5000, NotLoadCacheAtStart: true,
			CacheDir: dir, LogDir: dir, LogLevel: "error",
		},
		ServerConfigs: []constant.ServerConfig{{IpAddr: "127.0.0.1", Port: uint64(p.port)}},
	})
	if err != nil {
		t.Fatalf("naming client: %v", err)
	}
	t.Cleanup(c.CloseClient)
	time.Sleep(50 * time.Millisecond) // the server rejects the SDK's duplicate first re-send otherwise
	return c
}

// register registers in through c and reports whether the server took it;
// (false, nil) from the SDK is a refusal (or a duplicate re-send, which a
// second try tells apart).
func register(c naming_client.INamingClient, in instance) (bool, error) {
	param := vo.RegisterInstanceParam{
		Ip: in.addr.String(), Port: uint64(in.port), Weight: in.weight, Enable: in.enabled, Healthy: in.healthy,
		ClusterName: in.cluster, ServiceName: in.service, GroupName: in.group, Ephemeral: true,
	}
	var (
		ok  bool
		err error
	)
	for range 3 {
		if ok, err = c.RegisterInstance(param); ok {
			return true, nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return false, err
}

// TestNacosLogin: against a Nacos-protocol server with authentication on
// (Polaris, patch fix 5), Caddy logs in with username and password and
// requests reach the instance; without credentials, and with a wrong
// password, the server refuses the subscription and Caddy's log says what to
// check, without ever showing the password. The server checks the token on
// registrations too: one made without logging in is refused.
func TestNacosLogin(t *testing.T) {
	dir := t.TempDir()
	p := &polaris{dir: dir, port: nacosAuthPort}
	p.script(t, "start-polaris.sh", "POLARIS_NACOS_AUTH=1")
	t.Cleanup(func() { p.stop(t) })
	n := harness.NewNetns(t)
	a, b := n.AddAddr(t), n.AddAddr(t)
	n.Backend(t, "a", a, 8080)
	n.Backend(t, "b", b, 8080)

	start := time.Now()
	if ok, err := register(loginClient(t, p, "", ""), up("DEFAULT_GROUP", "auth", b, 8080)); ok {
		t.Fatalf("a registration without logging in was accepted after %v (err %v): the server does not check tokens", time.Since(start), err)
	}
	start = time.Now()
	if ok, err := register(loginClient(t, p, polarisUser, polarisPassword), up("DEFAULT_GROUP", "auth", a, 8080)); !ok {
		t.Fatalf("registering as %s: refused after %v (%v)", polarisUser, time.Since(start), err)
	}

	const wrongPassword = "wrong-pass-Q7x2Lm"
	logFile := filepath.Join(dir, "caddy.log")
	app := func(credentials string) string {
		return fmt.Sprintf(`"nacos": {"servers": {"default": {"addresses": ["127.0.0.1:%d"]%s, "timeout": "2s", "reconcile_interval": "5s"}}}`,
			p.port, credentials)
	}
	handler := nacosProxy(map[string]any{"service": "auth"})

	// Right credentials: only a, registered with a login, is served.
	start = time.Now()
	c := harness.StartCaddyLogged(t, nacosCaddyPort, handler, app(fmt.Sprintf(`, "username": %q, "password": %q`, polarisUser, polarisPassword)), logFile)
	c.ExpectBackends(t, 15*time.Second, "a")
	t.Logf("logged in and served a %v after start", time.Since(start).Round(time.Millisecond))

	// No credentials, then a wrong password: the subscription is refused and
	// the log says so.
	for _, tc := range []struct{ name, credentials, want string }{
		{"no credentials", "", "it may have refused the request; if the server requires authentication, set username and password"},
		{"wrong password", fmt.Sprintf(`, "username": %q, "password": %q`, polarisUser, wrongPassword), "it may have refused the request; check username and password"},
	} {
		from := len(harness.ReadFile(logFile))
		start := time.Now()
		c.Load(handler, app(tc.credentials))
		harness.Eventually(t, 15*time.Second, func() error {
			if log := harness.ReadFile(logFile)[from:]; !strings.Contains(log, tc.want) {
				return fmt.Errorf("%s: the log does not say %q yet", tc.name, tc.want)
			}
			return nil
		})
		took := time.Since(start).Round(time.Millisecond)
		for line := range strings.SplitSeq(harness.ReadFile(logFile)[from:], "\n") {
			if strings.Contains(line, tc.want) {
				t.Logf("%s: explained %v after the reload: %s", tc.name, took, line)
				break
			}
		}
		if name, err := c.Get(""); err == nil {
			t.Errorf("%s: a request reached %q", tc.name, name)
		}
	}

	log := harness.ReadFile(logFile)
	if strings.Contains(log, wrongPassword) {
		t.Errorf("caddy's log shows the password:\n%s", log)
	}
	if t.Failed() {
		t.Logf("caddy's log:\n%s", log)
	}
}
