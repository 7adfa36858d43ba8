//go:build integration

package integration

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddy-discovery/caddy-discovery/integration/harness"
)

// The Polaris of the Eureka restart test, apart from the other tests'
// servers: its Nacos port (gRPC +1000, Polaris's own gRPC +2000) and its
// Eureka API's port.
const (
	eurekaRestartNacosPort = 4848
	eurekaRestartPort      = 4761
)

// logLines returns the lines of a Caddy JSON log with the given message.
func logLines(log, msg string) []string {
	var out []string
	for l := range strings.SplitSeq(log, "\n") {
		if strings.Contains(l, fmt.Sprintf(`"msg":%q`, msg)) {
			out = append(out, l)
		}
	}
	return out
}

// TestEurekaServerRestart: a Eureka server (Polaris's Eureka API, its
// registry on disk) is killed (SIGKILL) and started again while requests
// flow. The instances stay up and keep heartbeating, as eureka-clients do.
// No request fails: the last known instances are served through the
// outage. The connection's problem is logged once, with what to expect
// ("serving the last known instances meanwhile"), and its end once
// ("connected to eureka"); a registration made right after the restart is
// served. Figures: requests served and failed, the time from the server
// answering again to Caddy's recovery, and to the new instance being
// served (Caddy's backoff after failed polls, from refresh_interval 1 s
// doubling, dominates both).
func TestEurekaServerRestart(t *testing.T) {
	p := &polaris{dir: t.TempDir(), port: eurekaRestartNacosPort}
	eurekaEnv := fmt.Sprintf("EUREKA_PORT=%d", eurekaRestartPort)
	p.script(t, "start-polaris.sh", eurekaEnv)
	t.Cleanup(func() { p.stop(t) })
	base := fmt.Sprintf("http://127.0.0.1:%d/eureka", eurekaRestartPort)

	n := harness.NewNetns(t)
	a, b, c := n.AddAddr(t), n.AddAddr(t), n.AddAddr(t)
	n.Backend(t, "a", a, 8080)
	n.Backend(t, "b", b, 8080)
	n.Backend(t, "c", c, 8080)
	reg := newEurekaRegistrar(t, base, "RESTART")
	reg.register("a", a.String(), 8080)
	reg.register("b", b.String(), 8080)

	const conn = "restart" // the server's name in the eureka app
	logFile := filepath.Join(t.TempDir(), "caddy.log")
	app := fmt.Sprintf(`"eureka": {"servers": {%q: {"urls": [%q], "refresh_interval": "1s", "timeout": "2s"}}}`, conn, base)
	cd := harness.StartCaddyLogged(t, eurekaCaddyPort, eurekaProxy(map[string]any{"app": "restart", "server": conn}), app, logFile)
	cd.ExpectBackends(t, 15*time.Second, "a", "b")
	reconnects := discoveryMetric(t, "caddy_discovery_reconnects_total", "source", "eureka", "connection", conn)

	tr := startTraffic(t, cd, []string{"a", "b", "c"}, "")

	time.Sleep(500 * time.Millisecond)
	killed := time.Now()
	p.kill(t)
	harness.Eventually(t, 10*time.Second, func() error {
		if len(logLines(harness.ReadFile(logFile), "eureka connection problem")) == 0 {
			return fmt.Errorf("no %q line in Caddy's log since the server was killed", "eureka connection problem")
		}
		return nil
	})
	t.Logf("the problem was logged %v after the kill", time.Since(killed).Round(time.Millisecond))
	time.Sleep(3 * time.Second) // traffic during the outage
	p.script(t, "start-polaris.sh", eurekaEnv)
	back := time.Now()
	t.Logf("the server was down for %v (killed, then started again until its ports answered)", back.Sub(killed).Round(time.Millisecond))

	// A change made right after the restart: a new instance registers.
	reg.register("c", c.String(), 8080)
	var recovered time.Duration
	harness.Eventually(t, 30*time.Second, func() error {
		log := harness.ReadFile(logFile)
		lost := strings.Index(log, `"msg":"eureka connection problem"`)
		if lost < 0 || !strings.Contains(log[lost:], `"msg":"connected to eureka"`) {
			return fmt.Errorf("no %q line after the problem in Caddy's log", "connected to eureka")
		}
		if recovered == 0 {
			recovered = time.Since(back)
		}
		return nil
	})
	cd.ExpectBackends(t, 30*time.Second, "a", "b", "c")
	servedC := time.Since(back)
	total, failed, first := tr.outcome()

	t.Logf("eureka restart: %d requests served, %d failed; Caddy reconnected within %v of the server answering again, and served the instance registered then within %v",
		total-failed, failed, recovered.Round(time.Millisecond), servedC.Round(time.Millisecond))
	if failed > 0 {
		t.Errorf("%d of %d requests failed across the server restart; the first: %s", failed, total, first)
	}
	log := harness.ReadFile(logFile)
	problems := logLines(log, "eureka connection problem")
	if len(problems) != 1 {
		t.Errorf("the connection problem was logged %d times, want once:\n%s", len(problems), strings.Join(problems, "\n"))
	} else if !strings.Contains(problems[0], `"level":"error"`) ||
		!strings.Contains(problems[0], "serving the last known instances meanwhile") ||
		!strings.Contains(problems[0], fmt.Sprintf("127.0.0.1:%d", eurekaRestartPort)) {
		t.Errorf("the problem's line does not say which server and that the last instances are served:\n%s", problems[0])
	}
	// once at the start (the first answer) and once after the restart
	if got := logLines(log, "connected to eureka"); len(got) != 2 {
		t.Errorf("%q logged %d times, want twice (first answer, end of the outage):\n%s", "connected to eureka", len(got), strings.Join(got, "\n"))
	}
	if got := discoveryMetric(t, "caddy_discovery_reconnects_total", "source", "eureka", "connection", conn); got != reconnects+1 {
		t.Errorf("caddy_discovery_reconnects_total went from %v to %v, want one reconnect", reconnects, got)
	}
	if got := discoveryMetric(t, "caddy_discovery_connected", "source", "eureka", "connection", conn); got != 1 {
		t.Errorf("caddy_discovery_connected = %v after the restart, want 1", got)
	}
}
