package kubernetes

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/utils/ptr"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddy-discovery/caddy-discovery/upstreams/upstreamstest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreTopFunction("k8s.io/klog/v2.(*flushDaemon).run.func1"))
}

// TestSharedWatchLifecycle checks, with client-go's fake clientset, that
// sources of the same cluster and namespace share one informer set, that
// events reach the snapshot, and that the last Cleanup stops the watches.
func TestSharedWatchLifecycle(t *testing.T) {
	yes := ptr.To(true)
	client := fake.NewClientset(testService(), slice(discoveryv1.AddressTypeIPv4, 8080, ep{addr: "10.0.0.1", ready: yes}))
	app := new(App)
	ref := Reference{Namespace: "shop", Name: "web", Port: "http"}
	a, b := new(KubernetesUpstreams), new(KubernetesUpstreams)
	for _, u := range []*KubernetesUpstreams{a, b} {
		if err := u.subscribe(caddy.Log(), app, "test", "fp-lifecycle", client, ref, selection{target: targetEndpoints}); err != nil {
			t.Fatal(err)
		}
	}
	if a.sub.ns != b.sub.ns {
		t.Fatal("two sources on the same cluster and namespace must share one informer set")
	}
	if _, err := a.GetUpstreams(nil); err == nil || !strings.Contains(err.Error(), "waiting for the first list") {
		t.Fatalf("before start: err = %v, want waiting for the first list", err)
	}

	if err := app.Start(); err != nil {
		t.Fatal(err)
	}
	upstreamstest.Eventually(t, 5*time.Second, upstreamstest.ExpectDials(a, "10.0.0.1:8080"))

	// A second slice for the same Service adds an endpoint.
	es := slice(discoveryv1.AddressTypeIPv4, 8080, ep{addr: "10.0.0.2", ready: yes})
	es.Name = "web-y"
	if _, err := client.DiscoveryV1().EndpointSlices("shop").Create(context.Background(), es, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	upstreamstest.Eventually(t, 5*time.Second, upstreamstest.ExpectDials(b, "10.0.0.1:8080", "10.0.0.2:8080"))

	// Fresh values on every call: reverse_proxy writes into them.
	u1, _ := a.GetUpstreams(nil)
	u2, _ := a.GetUpstreams(nil)
	if u1[0] == u2[0] {
		t.Fatal("GetUpstreams must return fresh upstream values on every call")
	}

	// Deleting the Service is reported with the services that exist.
	if err := client.CoreV1().Services("shop").Delete(context.Background(), "web", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	upstreamstest.Eventually(t, 5*time.Second, func() error {
		_, err := a.GetUpstreams(nil)
		if err == nil || !strings.Contains(err.Error(), `service shop/web not found`) {
			return fmt.Errorf("after delete: err = %v", err)
		}
		return nil
	})

	set := a.sub.ns
	if err := a.Cleanup(); err != nil {
		t.Fatal(err)
	}
	if set.Ctx.Err() != nil {
		t.Fatal("the set must keep running while b uses it")
	}
	if err := b.Cleanup(); err != nil {
		t.Fatal(err)
	}
	if set.Ctx.Err() == nil {
		t.Fatal("the last Cleanup must stop the set")
	}
}

// TestValidateStartsNothing checks that provisioning and cleaning up without
// Start (what caddy validate does) leaves no goroutine and sends no request.
func TestValidateStartsNothing(t *testing.T) {
	client := fake.NewClientset()
	u := new(KubernetesUpstreams)
	if err := u.subscribe(caddy.Log(), new(App), "test", "fp-validate", client, Reference{Namespace: "a", Name: "b"}, selection{target: targetNodePort}); err != nil {
		t.Fatal(err)
	}
	if err := u.Cleanup(); err != nil {
		t.Fatal(err)
	}
	if n := len(client.Actions()); n != 0 {
		t.Fatalf("provision + cleanup sent %d requests, want none: %v", n, client.Actions())
	}
}

func TestRoutineWatchEnds(t *testing.T) {
	ctx := context.Background()
	for _, err := range []error{
		apierrors.NewResourceExpired("too old resource version"),
		apierrors.NewGone("gone"),
		io.EOF,
		fmt.Errorf("watch: %w", io.ErrUnexpectedEOF),
	} {
		if !routineWatchEnd(ctx, err) {
			t.Errorf("%v must count as a routine end of a watch", err)
		}
	}
	for _, err := range []error{
		apierrors.NewUnauthorized("no"),
		apierrors.NewForbidden(schema.GroupResource{Resource: "services"}, "", errors.New("no")),
		errors.New("dial tcp 127.0.0.1:1: connect: connection refused"),
	} {
		if routineWatchEnd(ctx, err) {
			t.Errorf("%v must be reported", err)
		}
	}
	canceled, cancel := context.WithCancel(ctx)
	cancel()
	if !routineWatchEnd(canceled, errors.New("anything")) {
		t.Error("errors during shutdown are routine")
	}
}
