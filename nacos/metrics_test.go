package nacos

import (
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/nacos-group/nacos-sdk-go/v2/model"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/caddy-discovery/caddy-discovery/upstreams"
	"github.com/caddy-discovery/caddy-discovery/upstreams/upstreamstest"
)

// expectMetric polls until the sample exists with value want.
func expectMetric(t *testing.T, reg prometheus.Gatherer, want float64, name string, labels ...string) {
	t.Helper()
	upstreamstest.Eventually(t, 5*time.Second, func() error {
		if got, ok := upstreamstest.Sample(t, reg, name, labels...); !ok || got != want {
			return fmt.Errorf("%s%v = %v (present: %v), want %v", name, labels, got, ok, want)
		}
		return nil
	})
}

func TestExplainKinds(t *testing.T) {
	for _, tc := range []struct {
		auth, msg string
		want      upstreams.ProblemKind
	}{
		{"", "rpc error: code = 403, unknown user", upstreams.KindUnauthorized},
		{"username", "rpc error: code = 403, user not found!", upstreams.KindUnauthorized},
		{"username", "code = 403, authorization failed!", upstreams.KindForbidden},
		{"access_key", "access denied to namespace dev", upstreams.KindForbidden},
		{"", "access denied", upstreams.KindUnauthorized}, // no credentials were given
		{"username", "namespace dev does not exist", upstreams.KindNotFound},
		{"username", "request timeout", upstreams.KindOther},
	} {
		w := &subscription{c: &client{where: "nacos server at 127.0.0.1:8848", auth: tc.auth, namespace: "dev"}, ref: Reference{Group: "DEFAULT_GROUP", Service: "orders"}}
		err := w.explain(errors.New(tc.msg))
		if got := upstreams.ProblemKinds(err); !slices.Equal(got, []upstreams.ProblemKind{tc.want}) {
			t.Errorf("%s with %q credentials: kinds %v, want %v (%v)", tc.msg, tc.auth, got, tc.want, err)
		}
	}
}

// TestMetricsFollowInstances: backends and updates follow the pushes, each
// push is observed in the publish histogram, and a lost connection is one
// unreachable problem of the service; coming back is one reconnect and one
// subscription restart, while routine reconciles are none.
func TestMetricsFollowInstances(t *testing.T) {
	tn, fake, _ := fakeTuning()
	reg := upstreamstest.Metrics(t)
	app := new(App)
	u := &NacosUpstreams{Service: "orders", Server: Server{Addresses: []string{"127.0.0.9:8848"}, ReconcileInterval: caddy.Duration(100 * time.Millisecond)}, tuning: tn}
	if err := u.provision(caddy.Log(), app); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = u.Cleanup() })
	svc := []string{"source", "nacos", "service", "DEFAULT_GROUP@@orders"}
	conn := []string{"source", "nacos", "connection", "127.0.0.9:8848"}
	kind := func(k upstreams.ProblemKind) []string { return append(slices.Clone(svc), "kind", k.String()) }
	expectMetric(t, reg, 0, "caddy_discovery_connected", conn...)
	expectMetric(t, reg, 0, "caddy_discovery_problems_total", kind(upstreams.KindOther)...) // "connecting" is no problem

	_ = app.Start()
	key := "DEFAULT_GROUP@@orders"
	upstreamstest.Eventually(t, 5*time.Second, func() error {
		if !fake.push(key, inst("10.0.0.1", 80), inst("10.0.0.2", 80)) {
			return errors.New("not subscribed")
		}
		return nil
	})
	expectMetric(t, reg, 2, "caddy_discovery_backends", svc...)
	expectMetric(t, reg, 1, "caddy_discovery_updates_total", svc...)
	expectMetric(t, reg, 1, "caddy_discovery_connected", conn...)
	expectMetric(t, reg, 1, "caddy_discovery_nacos_publish_seconds", "connection", "127.0.0.9:8848")
	fake.push(key, inst("10.0.0.1", 80), inst("10.0.0.2", 80), inst("10.0.0.3", 80, func(i *model.Instance) { i.Weight = 3 }))
	expectMetric(t, reg, 3, "caddy_discovery_backends", svc...)
	expectMetric(t, reg, 2, "caddy_discovery_updates_total", svc...)
	expectMetric(t, reg, 2, "caddy_discovery_nacos_publish_seconds", "connection", "127.0.0.9:8848")
	upstreamstest.Eventually(t, 5*time.Second, func() error {
		fake.mu.Lock()
		defer fake.mu.Unlock()
		if n := fake.subs[u.subscription.param]; n < 3 {
			return fmt.Errorf("%d Subscribe calls, want reconciles", n)
		}
		return nil
	})
	expectMetric(t, reg, 0, "caddy_discovery_watch_restarts_total", conn...)

	fake.mu.Lock()
	fake.healthy = false
	fake.mu.Unlock()
	expectMetric(t, reg, 0, "caddy_discovery_connected", conn...)
	expectMetric(t, reg, 1, "caddy_discovery_problems_total", kind(upstreams.KindUnreachable)...)
	expectMetric(t, reg, 3, "caddy_discovery_backends", svc...) // the last known instances stay
	fake.mu.Lock()
	fake.healthy = true
	fake.mu.Unlock()
	expectMetric(t, reg, 1, "caddy_discovery_connected", conn...)
	expectMetric(t, reg, 1, "caddy_discovery_reconnects_total", conn...)
	expectMetric(t, reg, 1, "caddy_discovery_watch_restarts_total", conn...)
	expectMetric(t, reg, 1, "caddy_discovery_problems_total", kind(upstreams.KindUnreachable)...)

	if err := u.Cleanup(); err != nil {
		t.Fatal(err)
	}
	if v, ok := upstreamstest.Sample(t, reg, "caddy_discovery_backends", svc...); ok {
		t.Errorf("backends = %v after the last source left, want no series", v)
	}
	if v, ok := upstreamstest.Sample(t, reg, "caddy_discovery_connected", conn...); ok {
		t.Errorf("connected = %v after the client closed, want no series", v)
	}
}
