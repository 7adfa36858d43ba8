//go:build integration

package integration

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddy-discovery/caddy-discovery/integration/harness"
)

// TestEurekaReloadsKeepOnePoller: 20 config reloads alternate between two
// configs that read the same Eureka server (the eureka app's server
// "reload") for different applications and sites. Evidence that one poller
// serves them all, kept across the reloads:
//   - from outside: Caddy holds exactly one TCP connection to the server
//     throughout (counted on a byte-for-byte forwarder in front of
//     Polaris's Eureka port, so that the registrar's connections are not
//     counted), and opens no other;
//   - caddy_discovery_eureka_fetches_total: no full fetch after the first, and
//     deltas at one per refresh_interval during and after the reloads, not
//     one per loaded config;
//   - every reload's sites serve at once, from the running poller's copy.
//
// Changes are still followed after the reloads, and once Caddy stops, the
// connection is closed and no goroutine of the eureka package is left.
func TestEurekaReloadsKeepOnePoller(t *testing.T) {
	sharedPolaris(t)
	fwd := harness.NewForwarder(t, fmt.Sprintf("127.0.0.1:%d", sharedEurekaPort))
	n := harness.NewNetns(t)
	a, a2, b := n.AddAddr(t), n.AddAddr(t), n.AddAddr(t)
	n.Backend(t, "a", a, 8080)
	n.Backend(t, "a2", a2, 8080)
	n.Backend(t, "b", b, 8080)
	regA := newEurekaRegistrar(t, fmt.Sprintf("http://127.0.0.1:%d/eureka", sharedEurekaPort), "RELOADA")
	regB := newEurekaRegistrar(t, fmt.Sprintf("http://127.0.0.1:%d/eureka", sharedEurekaPort), "RELOADB")
	regA.register("reload-a", a.String(), 8080)
	regB.register("reload-b", b.String(), 8080)
	// Caddy's first fetch finds both: with an empty copy, a poller fetches
	// the whole registry again, as eureka-client does.
	harness.Eventually(t, 10*time.Second, func() error {
		for _, app := range []string{"RELOADA", "RELOADB"} {
			resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/eureka/apps/%s", sharedEurekaPort, app))
			if err != nil {
				return err
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("GET /eureka/apps/%s: HTTP %d", app, resp.StatusCode)
			}
		}
		return nil
	})

	const conn = "reload" // the server's name in the eureka app
	const interval = time.Second
	app := fmt.Sprintf(`"eureka": {"servers": {%q: {"urls": ["http://127.0.0.1:%d/eureka"], "refresh_interval": %q}}}`,
		conn, fwd.Port(), interval.String())
	src := func(app string) string { return eurekaProxy(map[string]any{"app": app, "server": conn}) }
	// Config i: RELOADA on a site of its own and as the default; on even
	// i, RELOADB too.
	handler := func(i int) string {
		routes := fmt.Sprintf(`{"match": [{"host": ["a%d.test"]}], "handle": [%s]}`, i, src("reloada"))
		if i%2 == 0 {
			routes += fmt.Sprintf(`, {"match": [{"host": ["b.test"]}], "handle": [%s]}`, src("RELOADB"))
		}
		return fmt.Sprintf(`{"handler": "subroute", "routes": [%s, {"handle": [%s]}]}`, routes, src("ReloadA"))
	}
	metric := func(kind, result string) float64 {
		return discoveryMetric(t, "caddy_discovery_eureka_fetches_total", "connection", conn, "kind", kind, "result", result)
	}
	fulls0 := metric("full", "ok")

	cd := harness.StartCaddy(t, eurekaCaddyPort, handler(0), app)
	cd.ExpectBackends(t, 15*time.Second, "a")
	if got := grpcConns(t, fwd.Port()); got != 1 {
		t.Fatalf("%d connections from Caddy to the Eureka server, want 1", got)
	}
	if got := metric("full", "ok") - fulls0; got != 1 {
		t.Fatalf("%v full fetches for one config, want 1", got)
	}

	start, deltasStart, fullsStart := time.Now(), metric("delta", "ok"), metric("full", "ok")
	for i := 1; i <= 20; i++ {
		cd.Load(handler(i), app)
		// the new config's sites serve at once
		for range 3 {
			if got, err := cd.Get(""); err != nil || got != "a" {
				t.Fatalf("right after reload %d: the default site answered %q, %v; want a", i, got, err)
			}
			if got, err := cd.Get(fmt.Sprintf("a%d.test", i)); err != nil || got != "a" {
				t.Fatalf("right after reload %d: site a%d.test answered %q, %v; want a", i, i, got, err)
			}
			if i%2 == 0 {
				if got, err := cd.Get("b.test"); err != nil || got != "b" {
					t.Fatalf("right after reload %d: site b.test answered %q, %v; want b", i, got, err)
				}
			}
		}
		if got := grpcConns(t, fwd.Port()); got != 1 {
			t.Fatalf("after reload %d: %d connections from Caddy to the Eureka server, want 1", i, got)
		}
		time.Sleep(200 * time.Millisecond)
	}
	reloads := time.Since(start)
	deltasReloads := metric("delta", "ok") - deltasStart
	time.Sleep(5 * time.Second) // and after the reloads
	window := time.Since(start)
	deltas := metric("delta", "ok") - deltasStart
	fulls := metric("full", "ok") - fullsStart
	failures := metric("full", "error") + metric("delta", "error")
	t.Logf("eureka reloads: 20 reloads in %v; %v deltas during them, %v in all over %v (refresh_interval %v), %v full fetches during and after them, %v failed requests; %d TCP connections from Caddy to the server in all",
		reloads.Round(time.Millisecond), deltasReloads, deltas, window.Round(time.Millisecond), interval, fulls, failures, fwd.Accepted())
	if fulls != 0 {
		t.Errorf("%v full fetches during and after the reloads, want none: a reload started another poller", fulls)
	}
	// The poller waits refresh_interval after each answer: at most one
	// delta per interval, plus the one under way.
	if most := float64(window/interval) + 1; deltas > most {
		t.Errorf("%v deltas in %v, want at most %v: more than one poller", deltas, window.Round(time.Millisecond), most)
	}
	if least := float64(window/interval) / 2; deltas < least {
		t.Errorf("%v deltas in %v, want at least %v: the poller stalled", deltas, window.Round(time.Millisecond), least)
	}
	if failures != 0 {
		t.Errorf("%v failed requests to the server", failures)
	}
	if got := fwd.Accepted(); got != 1 {
		t.Errorf("Caddy opened %d TCP connections to the server, want 1", got)
	}

	// Changes are still followed: a second instance of RELOADA.
	changed := time.Now()
	regA.register("reload-a2", a2.String(), 8080)
	cd.ExpectBackends(t, 10*time.Second, "a", "a2")
	t.Logf("after the reloads, a registration was served within %v", time.Since(changed).Round(time.Millisecond))

	if err := caddy.Stop(); err != nil {
		t.Fatal(err)
	}
	harness.Eventually(t, 10*time.Second, func() error {
		if got := grpcConns(t, fwd.Port()); got != 0 {
			return fmt.Errorf("%d connections from Caddy to the Eureka server after stopping Caddy, want 0", got)
		}
		if g := goroutinesWith("caddy-discovery/eureka."); g != 0 {
			return fmt.Errorf("%d goroutines of the eureka package left after stopping Caddy", g)
		}
		return nil
	})
}
