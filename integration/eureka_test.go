//go:build integration

package integration

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/caddy-discovery/caddy-discovery/integration/harness"
)

// sharedEurekaPort is the Eureka API of the shared Polaris (sharedPolaris).
const sharedEurekaPort = 18761

const eurekaCaddyPort = 18090

func eurekaProxy(source map[string]any) string {
	source["source"] = "eureka"
	b, _ := json.Marshal(source)
	return fmt.Sprintf(`{"handler": "reverse_proxy", "load_balancing": {"selection_policy": {"policy": "round_robin"}}, "dynamic_upstreams": %s}`, b)
}

func eurekaServerApp() string {
	return fmt.Sprintf(`"eureka": {"servers": {"default": {"urls": ["http://127.0.0.1:%d/eureka"], "refresh_interval": "1s"}}}`, sharedEurekaPort)
}

// registerWithMetadata registers an instance with the given metadata and
// heartbeats it, as register does.
func (r *eurekaRegistrar) registerWithMetadata(id, ip string, port int, meta map[string]any) {
	r.t.Helper()
	body, _ := json.Marshal(map[string]any{"instance": map[string]any{
		"instanceId": id, "hostName": ip, "app": r.app, "ipAddr": ip, "status": "UP",
		"port":       map[string]any{"$": port, "@enabled": "true"},
		"securePort": map[string]any{"$": 443, "@enabled": "false"},
		"dataCenterInfo": map[string]any{
			"@class": "com.netflix.appinfo.InstanceInfo$DefaultDataCenterInfo", "name": "MyOwn",
		},
		"leaseInfo": map[string]any{"renewalIntervalInSecs": 2, "durationInSecs": 6},
		"metadata":  meta,
	}})
	r.must(http.MethodPost, "/apps/"+r.app, body, http.StatusNoContent)
	r.mu.Lock()
	r.beating[id] = true
	r.mu.Unlock()
}

// TestEurekaFollowsRegistry: a real Caddy process-local config with
// `dynamic eureka` against the real Eureka-protocol server (Polaris)
// follows what instances do through the Eureka API as Java clients do it:
// register, OUT_OF_SERVICE and back UP, cancel on shutdown, and a crash
// (heartbeats stop, the lease expires); a second site selects by metadata.
// Each change must be served within the server's cache refresh plus one
// refresh_interval (1 s here); the figures are logged.
func TestEurekaFollowsRegistry(t *testing.T) {
	sharedPolaris(t)
	n := harness.NewNetns(t)
	reg := newEurekaRegistrar(t, fmt.Sprintf("http://127.0.0.1:%d/eureka", sharedEurekaPort), "FOLLOW")
	a, b, c := n.AddAddr(t), n.AddAddr(t), n.AddAddr(t)
	n.Backend(t, "a", a, 8080)
	n.Backend(t, "b", b, 8080)
	n.Backend(t, "c", c, 8080)
	reg.registerWithMetadata("a", a.String(), 8080, map[string]any{"zone": "z1"})
	reg.registerWithMetadata("b", b.String(), 8080, map[string]any{"zone": "z1"})
	reg.registerWithMetadata("c", c.String(), 8080, map[string]any{"zone": "z2", "version": "v2"})

	cd := harness.StartCaddy(t, eurekaCaddyPort, fmt.Sprintf(`{"handler": "subroute", "routes": [
		{"match": [{"host": ["z2.test"]}], "handle": [%s]},
		{"handle": [%s]}]}`,
		eurekaProxy(map[string]any{"app": "follow", "metadata": map[string]string{"zone": "z2"}}),
		eurekaProxy(map[string]any{"app": "follow"})), eurekaServerApp())

	// Polaris's Eureka API refreshes its cache every second (start-polaris.sh),
	// and Caddy polls every second.
	const within = 25 * time.Second // the lease expiry adds 6 s
	var took []time.Duration
	step := func(what string, change func(), want ...string) {
		t.Helper()
		start := time.Now()
		if change != nil {
			change()
		}
		cd.ExpectBackends(t, within, want...)
		took = append(took, time.Since(start))
		t.Logf("eureka: %s: served after %v", what, time.Since(start).Round(time.Millisecond))
	}
	step("first fetch", nil, "a", "b", "c")
	for range 10 {
		if got, err := cd.Get("z2.test"); err != nil || got != "c" {
			t.Fatalf("the site selecting metadata zone=z2 answered %q, %v; want c", got, err)
		}
	}
	step("b OUT_OF_SERVICE", func() { reg.setStatus("b", "OUT_OF_SERVICE") }, "a", "c")
	step("b UP again", func() { reg.setStatus("b", "UP") }, "a", "b", "c")
	step("c cancelled", func() { reg.cancelInstance("c") }, "a", "b")
	step("a crashed (lease expired)", func() { reg.stopBeating("a") }, "b")
	slices.Sort(took)
	t.Logf("eureka: change -> served over %d changes: median %v, max %v (server cache refresh 1 s, refresh_interval 1 s)",
		len(took), took[len(took)/2].Round(time.Millisecond), took[len(took)-1].Round(time.Millisecond))
}
