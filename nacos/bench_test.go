package nacos

import (
	"fmt"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"
	"github.com/nacos-group/nacos-sdk-go/v2/model"
	"github.com/nacos-group/nacos-sdk-go/v2/vo"

	"github.com/caddy-discovery/caddy-discovery/upstreams/upstreamstest"
)

// BenchmarkGetUpstreams compares, for services of 1, 10 and 100 healthy
// instances, the nacos source answering from its snapshot with Caddy's static
// upstreams and srv source (cached), as kubernetes/bench_test.go does for k8s;
// BenchmarkGetUpstreamsParallel does so with concurrent readers.
func BenchmarkGetUpstreams(b *testing.B) { upstreamstest.Benchmark(b, "nacos", benchNacosSource) }

func BenchmarkGetUpstreamsParallel(b *testing.B) {
	upstreamstest.BenchmarkParallel(b, "nacos", benchNacosSource)
}

// benchNacosSource provisions and starts a source of shop@@web-N with a fake
// naming client, pushes n healthy instances through the subscription
// callback, as the SDK does, and waits until the source serves all n.
func benchNacosSource(b *testing.B, n int) reverseproxy.UpstreamSource {
	b.Helper()
	app := new(App)
	key := fmt.Sprintf("shop@@web-%d", n)
	u := &NacosUpstreams{Service: key, tuning: testTuning(func(vo.NacosClientParam) (namingClient, error) { return newFake(), nil })}
	if err := u.provision(caddy.Log(), app); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		if err := u.Cleanup(); err != nil {
			b.Error(err)
		}
	})
	if err := app.Start(); err != nil {
		b.Fatal(err)
	}
	// the sources of all sizes share one pooled client, made by the first
	// with its tuning and fake
	c := u.subscription.c
	<-c.ready
	fake := c.nc.(*fakeNaming)
	list := make([]model.Instance, n)
	for i := range n {
		list[i] = inst(upstreamstest.Addr(i), 8080)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if fake.push(key, list...) {
			ups, err := u.GetUpstreams(nil)
			if err == nil && len(ups) == n {
				return u
			}
		}
		if time.Now().After(deadline) {
			b.Fatalf("nacos source does not serve the %d pushed instances", n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
