//go:build integration

package integration

import (
	"fmt"
	"testing"
	"time"

	"github.com/caddy-discovery/caddy-discovery/integration/harness"
)

// TestNacosReReadsUnderPushes: a subscription re-read every 20 ms crosses a
// stream of pushes for 4 s. nacos-sdk-go v2.3.5 sorts a service's cached
// list in place while another goroutine of its own reads it (#818); the
// source makes the SDK's push handling, its re-subscription on connecting
// and our Subscribe exclusive (nacos/sdkserial.go), so -race stays quiet and
// the list served afterwards is the registry's.
func TestNacosReReadsUnderPushes(t *testing.T) {
	p := sharedPolaris(t)
	n := harness.NewNetns(t)
	reg := newRegistrar(t, p, "")
	a, b := n.AddAddr(t), n.AddAddr(t)
	n.Backend(t, "a", a, 8080)
	n.Backend(t, "b", b, 8080)
	ia, ib := up("DEFAULT_GROUP", "churn", a, 8080), up("DEFAULT_GROUP", "churn", b, 8080)
	reg.put(ia)
	reg.put(ib)

	app := fmt.Sprintf(`"nacos": {"servers": {"default": {"addresses": ["127.0.0.1:%d"], "reconcile_interval": "20ms"}}}`, p.port)
	cd := harness.StartCaddy(t, nacosCaddyPort, nacosProxy(map[string]any{"service": "churn"}), app)
	cd.ExpectBackends(t, 10*time.Second, "a", "b")

	puts := 0
	for end := time.Now().Add(4 * time.Second); time.Now().Before(end); puts++ {
		ib.weight = float64(1 + puts%3) // a new list: a push
		reg.put(ib)
		time.Sleep(10 * time.Millisecond)
	}
	t.Logf("%d changes pushed while the subscription was re-read every 20 ms", puts)
	ib.enabled = false
	reg.put(ib)
	cd.ExpectBackends(t, 5*time.Second, "a")
}
