package kubernetes

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/utils/ptr"

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

func TestWatchErrorKinds(t *testing.T) {
	gr := schema.GroupResource{Group: discoveryv1.GroupName, Resource: "endpointslices"}
	for _, tc := range []struct {
		err  error
		want upstreams.ProblemKind
	}{
		{apierrors.NewUnauthorized("no"), upstreams.KindUnauthorized},
		{apierrors.NewForbidden(gr, "", errors.New(`User "restricted" cannot list resource "endpointslices"`)), upstreams.KindForbidden},
		{apierrors.NewNotFound(gr, ""), upstreams.KindNotFound},
		{fmt.Errorf("Get: %w", &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connect: connection refused")}), upstreams.KindUnreachable},
		{errors.New("something else"), upstreams.KindOther},
	} {
		got := upstreams.ProblemKinds(explainWatchError("c", "shop", endpointSlices, tc.err))
		if !slices.Equal(got, []upstreams.ProblemKind{tc.want}) {
			t.Errorf("%v: kinds %v, want %v", tc.err, got, tc.want)
		}
	}
}

// TestMetricsFollowService: with client-go's fake clientset, a 403 on the
// first list is one forbidden problem and keeps the cluster's connection at
// 0; once the list works, the connection is 1 (no reconnect: it never had
// been), backends and updates follow the EndpointSlices, and a slice whose
// change trigger is new is observed in the propagation histogram once.
func TestMetricsFollowService(t *testing.T) {
	yes := ptr.To(true)
	client := fake.NewClientset(testService(), slice(discoveryv1.AddressTypeIPv4, 8080, ep{addr: "10.0.0.1", ready: yes}))
	var refused atomic.Bool
	client.PrependReactor("list", "endpointslices", func(k8stesting.Action) (bool, runtime.Object, error) {
		if refused.CompareAndSwap(false, true) {
			return true, nil, apierrors.NewForbidden(schema.GroupResource{Group: discoveryv1.GroupName, Resource: "endpointslices"}, "",
				errors.New(`User "restricted" cannot list resource "endpointslices" in API group "discovery.k8s.io"`))
		}
		return false, nil, nil
	})
	reg := upstreamstest.Metrics(t)
	app := new(App)
	u := new(KubernetesUpstreams)
	if err := u.subscribe(caddy.Log(), app, "metrics", "fp-metrics", client, Reference{Namespace: "shop", Name: "web", Port: "http"}, selection{target: targetEndpoints}); err != nil {
		t.Fatal(err)
	}
	svc := []string{"source", "k8s", "service", "shop/web:http"}
	conn := []string{"source", "k8s", "connection", "metrics"}
	kind := func(k upstreams.ProblemKind) []string { return append(slices.Clone(svc), "kind", k.String()) }
	expectMetric(t, reg, 0, "caddy_discovery_backends", svc...)
	expectMetric(t, reg, 0, "caddy_discovery_connected", conn...)

	if err := app.Start(); err != nil {
		t.Fatal(err)
	}
	expectMetric(t, reg, 1, "caddy_discovery_problems_total", kind(upstreams.KindForbidden)...)
	expectMetric(t, reg, 1, "caddy_discovery_backends", svc...)
	expectMetric(t, reg, 1, "caddy_discovery_connected", conn...)
	expectMetric(t, reg, 1, "caddy_discovery_updates_total", svc...)
	expectMetric(t, reg, 0, "caddy_discovery_reconnects_total", conn...)
	expectMetric(t, reg, 0, "caddy_discovery_k8s_propagation_seconds", "connection", "metrics")

	// A Pod became ready: the EndpointSlice controller's update carries the
	// time of that change.
	es := slice(discoveryv1.AddressTypeIPv4, 8080, ep{addr: "10.0.0.2", ready: yes})
	es.Name = "web-y"
	es.Annotations = map[string]string{corev1.EndpointsLastChangeTriggerTime: time.Now().Add(-200 * time.Millisecond).Format(time.RFC3339Nano)}
	ctx := context.Background()
	if _, err := client.DiscoveryV1().EndpointSlices("shop").Create(ctx, es, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	expectMetric(t, reg, 2, "caddy_discovery_backends", svc...)
	expectMetric(t, reg, 2, "caddy_discovery_updates_total", svc...)
	expectMetric(t, reg, 1, "caddy_discovery_k8s_propagation_seconds", "connection", "metrics")

	// An update of the labels alone, and a slice of a Service nobody
	// references, are not observed.
	es.Labels["other"] = "x"
	if _, err := client.DiscoveryV1().EndpointSlices("shop").Update(ctx, es, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	other := es.DeepCopy()
	other.Name, other.Labels = "api-x", map[string]string{discoveryv1.LabelServiceName: "api"}
	other.Annotations = map[string]string{corev1.EndpointsLastChangeTriggerTime: time.Now().Format(time.RFC3339Nano)}
	if _, err := client.DiscoveryV1().EndpointSlices("shop").Create(ctx, other, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// Readiness flips back: an update. Its trigger annotation may be the
	// same as the last one (two changes within a second have the same
	// whole-second time); the changed endpoints make it an observation.
	es.Endpoints[0].Conditions.Ready = ptr.To(false)
	if _, err := client.DiscoveryV1().EndpointSlices("shop").Update(ctx, es, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	expectMetric(t, reg, 1, "caddy_discovery_backends", svc...)
	expectMetric(t, reg, 3, "caddy_discovery_updates_total", svc...)
	expectMetric(t, reg, 2, "caddy_discovery_k8s_propagation_seconds", "connection", "metrics")
	expectMetric(t, reg, 1, "caddy_discovery_problems_total", kind(upstreams.KindForbidden)...)
	expectMetric(t, reg, 0, "caddy_discovery_problems_total", kind(upstreams.KindNoBackends)...)

	if err := u.Cleanup(); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"caddy_discovery_backends", "caddy_discovery_updates_total"} {
		if v, ok := upstreamstest.Sample(t, reg, name, svc...); ok {
			t.Errorf("%s = %v after the last source left, want no series", name, v)
		}
	}
	if v, ok := upstreamstest.Sample(t, reg, "caddy_discovery_connected", conn...); ok {
		t.Errorf("connected = %v after the last watch stopped, want no series", v)
	}
}

// TestWatchRestarts: a watch that the server ends on its timeout is
// restarted without a list, which is routine and not counted; a watch that
// ends in an error makes the reflector list again, and the watch after that
// counts as a restart.
func TestWatchRestarts(t *testing.T) {
	client := fake.NewClientset(testService())
	var calls atomic.Int32
	flaky := services
	flaky.watch = func(ctx context.Context, c kubernetes.Interface, ns string, o metav1.ListOptions) (watch.Interface, error) {
		w, err := services.watch(ctx, c, ns, o)
		if err != nil {
			return w, err
		}
		switch calls.Add(1) {
		case 1:
			time.AfterFunc(1200*time.Millisecond, w.Stop) // a clean end after a while: the server's timeout
		case 2:
			w.Stop() // at once, without events: the reflector lists again
		}
		return w, nil
	}
	reg := upstreamstest.Metrics(t)
	s, err := newInformerSet("restarts", "shop", "", client, flaky)
	if err != nil {
		t.Fatal(err)
	}
	s.start()
	conn := []string{"source", "k8s", "connection", "restarts"}
	upstreamstest.Eventually(t, 10*time.Second, func() error {
		if n := calls.Load(); n < 3 {
			return fmt.Errorf("%d watches so far", n)
		}
		return nil
	})
	expectMetric(t, reg, 1, "caddy_discovery_watch_restarts_total", conn...)
	expectMetric(t, reg, 1, "caddy_discovery_connected", conn...)
	if err := s.Destruct(); err != nil {
		t.Fatal(err)
	}
}
