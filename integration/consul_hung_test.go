//go:build integration

package integration

import (
	"fmt"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/caddy-discovery/caddy-discovery/integration/harness"
)

// TestConsulServerHung: a Consul server stopped with SIGSTOP keeps its
// sockets open, so Caddy's long-poll, which waits up to a minute anyway,
// gets neither an answer nor an error: on its own it would notice after
// ~74 s. The client's probe (a leader request every 10 s, 5 s to answer)
// reports it within 15 s, the last known instances keep serving with no
// failed request, and once the server continues, the connection is back and
// a change made then is served within 2 s.
func TestConsulServerHung(t *testing.T) {
	c := startConsul(t, 18550, false, true)
	n := harness.NewNetns(t)
	a, b := n.AddAddr(t), n.AddAddr(t)
	n.Backend(t, "a", a, 8080)
	n.Backend(t, "b", b, 8080)
	ia := consulInstance{id: "hung-a", service: "hung", addr: a, port: 8080}
	ib := consulInstance{id: "hung-b", service: "hung", addr: b, port: 8080}
	c.register(t, ia)
	const conn = "default" // the server's name in the consul app
	cd := harness.StartCaddy(t, consulCaddyPort, consulProxy(map[string]any{"service": "hung"}), c.app())
	cd.ExpectBackends(t, 10*time.Second, "a")

	tr := startTraffic(t, cd, []string{"a", "b"}, "")

	proc := c.cmd.Process
	var resumed atomic.Bool
	t.Cleanup(func() { // before the server is stopped: a stopped one ignores SIGTERM
		if !resumed.Load() {
			_ = proc.Signal(syscall.SIGCONT)
		}
	})
	time.Sleep(500 * time.Millisecond)
	stopped := time.Now()
	if err := proc.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	msg := expectConsulError(t, 20*time.Second, fmt.Sprintf(`cannot reach consul server "default" at 127.0.0.1:%d`, c.port),
		"no answer within 5s", "not hung", "serving the last known instances meanwhile")
	noticed := time.Since(stopped)
	t.Logf("hung Consul noticed after %s: %s", noticed.Round(time.Millisecond), msg)
	if got := discoveryMetric(t, "caddy_discovery_connected", "connection", conn); got != 0 {
		t.Errorf("caddy_discovery_connected = %v while Consul is hung, want 0", got)
	}

	if err := proc.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	resumed.Store(true)
	continued := time.Now()
	expectConsulConnected(t, 10*time.Second, conn)
	t.Logf("connection back %s after SIGCONT", time.Since(continued).Round(time.Millisecond))
	c.register(t, ib)
	registered := time.Now()
	cd.ExpectBackends(t, 2*time.Second, "a", "b")
	t.Logf("registered after the hang: served %s later", time.Since(registered).Round(time.Millisecond))
	total, failed, first := tr.outcome()
	t.Logf("%d requests during the hang, %d failed", total, failed)
	if failed > 0 {
		t.Errorf("%d requests failed, the first: %s", failed, first)
	}
}
