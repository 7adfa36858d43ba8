//go:build integration

package integration

import (
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/caddy-discovery/caddy-discovery/integration/harness"
)

// weightedProxy is a reverse_proxy over a nacos dynamic source with the
// registry_weighted policy, retries within 5 s, and passive health checks
// that take a backend out after one failure for 30 s.
func weightedProxy(service string) string {
	h := map[string]any{
		"handler":           "reverse_proxy",
		"dynamic_upstreams": map[string]any{"source": "nacos", "service": service},
		"load_balancing": map[string]any{
			"selection_policy": map[string]any{"policy": "registry_weighted"},
			"try_duration":     "5s",
			"try_interval":     "50ms",
		},
		"health_checks": map[string]any{"passive": map[string]any{"fail_duration": "30s", "max_fails": 1}},
	}
	b, _ := json.Marshal(h)
	return string(b)
}

// shares checks that a spread of requests reached the backends in the given
// percentages, each within tol points, with no failed request.
func shares(spread map[string]int, want map[string]float64, tol float64) error {
	total := 0
	for _, n := range spread {
		total += n
	}
	got := make(map[string]float64)
	for name, n := range spread {
		if strings.HasPrefix(name, "error") {
			return fmt.Errorf("%d of %d requests failed: %s", n, total, name)
		}
		if _, ok := want[name]; !ok {
			return fmt.Errorf("%d requests reached %s, which should get none: %v", n, name, spread)
		}
		got[name] = 100 * float64(n) / float64(total)
	}
	for name, pct := range want {
		if math.Abs(got[name]-pct) > tol {
			return fmt.Errorf("shares %v of %d requests (%v), want %v ±%v points", got, total, spread, want, tol)
		}
	}
	return nil
}

// TestNacosWeighted: with lb_policy registry_weighted, instances weighted
// 1:2:7 in the registry receive 10/20/70 % of the requests; a weight change
// moves the shares live, and so does a reload (without losing the weights);
// an instance that stops answering (still registered) fails passive health
// checks and gets nothing while the others keep their ratio, and no request
// fails.
func TestNacosWeighted(t *testing.T) {
	p := sharedPolaris(t)
	n := harness.NewNetns(t)
	reg := newRegistrar(t, p, "")
	a, b, c := n.AddAddr(t), n.AddAddr(t), n.AddAddr(t)
	n.Backend(t, "a", a, 8080)
	backendB := n.Backend(t, "b", b, 8080)
	n.Backend(t, "c", c, 8080)
	ia, ib, ic := up("DEFAULT_GROUP", "weighted", a, 8080), up("DEFAULT_GROUP", "weighted", b, 8080), up("DEFAULT_GROUP", "weighted", c, 8080)
	ia.weight, ib.weight, ic.weight = 1, 2, 7
	for _, in := range []instance{ia, ib, ic} {
		reg.put(in)
	}

	cd := harness.StartCaddy(t, nacosCaddyPort, weightedProxy("weighted"), nacosServerApp(p.port))
	cd.ExpectBackends(t, 10*time.Second, "a", "b", "c")

	measure := func(step string, want map[string]float64) {
		t.Helper()
		spread := cd.Spread(1000)
		t.Logf("%s: 1000 requests: %v", step, spread)
		if err := shares(spread, want, 2); err != nil {
			t.Fatalf("%s: %v", step, err)
		}
	}
	measure("weights 1:2:7", map[string]float64{"a": 10, "b": 20, "c": 70})

	ic.weight = 2
	reg.put(ic)
	changed := time.Now()
	harness.Eventually(t, 10*time.Second, func() error {
		return shares(cd.Spread(50), map[string]float64{"a": 20, "b": 40, "c": 40}, 6)
	})
	t.Logf("weight change 7 -> 2 visible in requests after %v", time.Since(changed).Round(time.Millisecond))
	measure("weights 1:2:2", map[string]float64{"a": 20, "b": 40, "c": 40})

	// a reload provisions a new policy and source before cleaning the old
	// ones up: the weights carry over
	cd.Load(weightedProxy("weighted"), nacosServerApp(p.port))
	measure("weights 1:2:2 after a reload", map[string]float64{"a": 20, "b": 40, "c": 40})

	// b stops answering but stays registered: the first request it gets
	// fails over to another backend (try_duration) and marks it down
	// (max_fails 1); a and c keep their 1:2
	backendB.Close()
	measure("b down, weights 1:2:2", map[string]float64{"a": 100.0 / 3, "c": 200.0 / 3})
}
