package consul

import (
	"fmt"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"
	"github.com/hashicorp/consul/api"

	"github.com/caddy-discovery/caddy-discovery/upstreams/upstreamstest"
)

// BenchmarkGetUpstreams compares, for services of 1, 10 and 100 passing
// instances, the consul source answering from its snapshot with Caddy's
// static upstreams and srv source (cached), as the other sources'
// benchmarks do; BenchmarkGetUpstreamsParallel does so with concurrent
// readers.
func BenchmarkGetUpstreams(b *testing.B) { upstreamstest.Benchmark(b, "consul", benchConsulSource) }

func BenchmarkGetUpstreamsParallel(b *testing.B) {
	upstreamstest.BenchmarkParallel(b, "consul", benchConsulSource)
}

// benchConsulSource provisions and starts a source of web-N against a fake
// Consul holding n passing instances, and waits until it serves them all.
func benchConsulSource(b *testing.B, n int) reverseproxy.UpstreamSource {
	b.Helper()
	f := newFakeConsul(b)
	service := fmt.Sprintf("web-%d", n)
	entries := make([]*api.ServiceEntry, n)
	for i := range n {
		entries[i] = entry(service, upstreamstest.Addr(i), 8080, api.HealthPassing)
	}
	f.set(service, entries...)
	app := new(App)
	u := &ConsulUpstreams{Service: service, Server: Server{Addresses: []string{f.addr()}}}
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
	upstreamstest.Eventually(b, 10e9, func() error {
		ups, err := u.GetUpstreams(nil)
		if err != nil || len(ups) != n {
			return fmt.Errorf("serving %d upstreams, %v; want %d", len(ups), err, n)
		}
		return nil
	})
	return u
}
