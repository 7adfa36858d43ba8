package kubernetes

import (
	"fmt"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/utils/ptr"

	"github.com/caddy-discovery/caddy-discovery/upstreams/upstreamstest"
)

// benchOtherServices is how many other Services, each with its own upstream
// source, share the benchmarked source's informer set: GetUpstreams must not
// depend on it.
const benchOtherServices = 200

// BenchmarkGetUpstreams compares, for Services of 1, 10 and 100 backends,
// the k8s source answering from its snapshot with Caddy's static upstreams and
// srv source (cached); BenchmarkGetUpstreamsParallel does so with concurrent
// readers. The loops and baselines are upstreamstest's, shared with nacos.
func BenchmarkGetUpstreams(b *testing.B) { upstreamstest.Benchmark(b, "k8s", benchK8sSource) }

func BenchmarkGetUpstreamsParallel(b *testing.B) {
	upstreamstest.BenchmarkParallel(b, "k8s", benchK8sSource)
}

// benchK8sSource subscribes a source to shop/web, which has n ready
// endpoints, alongside benchOtherServices other sources in the same
// namespace, starts the watches and waits until the source serves all n.
func benchK8sSource(b *testing.B, n int) reverseproxy.UpstreamSource {
	b.Helper()
	es := slice(discoveryv1.AddressTypeIPv4, 8080)
	for i := range n {
		es.Endpoints = append(es.Endpoints, discoveryv1.Endpoint{
			Addresses:  []string{upstreamstest.Addr(i)},
			Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)},
		})
	}
	objs := []runtime.Object{testService(), es}
	refs := []Reference{{Namespace: "shop", Name: "web", Port: "http"}}
	for i := range benchOtherServices {
		svc := testService()
		svc.Name = fmt.Sprintf("other-%d", i)
		other := slice(discoveryv1.AddressTypeIPv4, 8080, ep{addr: fmt.Sprintf("10.1.%d.%d", i/256, i%256)})
		other.Name = svc.Name + "-x"
		other.Labels[discoveryv1.LabelServiceName] = svc.Name
		objs = append(objs, svc, other)
		refs = append(refs, Reference{Namespace: "shop", Name: svc.Name, Port: "http"})
	}
	client := fake.NewClientset(objs...)
	app := new(App)
	fp := fmt.Sprintf("fp-bench-%d", n)
	sources := make([]*KubernetesUpstreams, len(refs))
	for i, ref := range refs {
		sources[i] = new(KubernetesUpstreams)
		if err := sources[i].subscribe(caddy.Log(), app, "bench", fp, client, ref, selection{target: targetEndpoints}); err != nil {
			b.Fatal(err)
		}
	}
	b.Cleanup(func() {
		for _, u := range sources {
			if err := u.Cleanup(); err != nil {
				b.Error(err)
			}
		}
	})
	if err := app.Start(); err != nil {
		b.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		ups, err := sources[0].GetUpstreams(nil)
		if err == nil && len(ups) == n {
			return sources[0]
		}
		if time.Now().After(deadline) {
			b.Fatalf("k8s source not synced: %d upstreams, %v; want %d", len(ups), err, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
