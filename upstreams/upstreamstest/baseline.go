// Package upstreamstest holds what the sources' tests and benchmarks share:
// polling for what GetUpstreams serves, the loops that time it, and the
// baselines every source is compared with, Caddy's static upstreams and its
// srv source's cached path. It is for tests only.
package upstreamstest

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"
	"github.com/miekg/dns"
)

// Sizes are the numbers of backends of the benchmarked service.
var Sizes = []int{1, 10, 100}

// getter is one way reverse_proxy obtains its upstreams for a request.
type getter struct {
	name string
	get  func(*http.Request) ([]*reverseproxy.Upstream, error)
}

// Source returns the source under test, ready to serve a service of n
// backends (Addr(0):8080 to Addr(n-1):8080).
type Source func(b *testing.B, n int) reverseproxy.UpstreamSource

var sink []*reverseproxy.Upstream

// Benchmark times GetUpstreams with one reader (b.Loop), for every size in
// Sizes, of the source that newSource sets up (sub-benchmark
// "backends=N/name") and of the baselines ("backends=N/srv-cached" and
// "backends=N/static", see Baselines).
func Benchmark(b *testing.B, name string, newSource Source) {
	each(b, name, newSource, func(b *testing.B, g getter, req *http.Request, n int) {
		for b.Loop() {
			ups, err := g.get(req)
			if err != nil || len(ups) != n {
				b.Fatalf("got %d upstreams, %v; want %d", len(ups), err, n)
			}
			sink = ups
		}
	})
}

// BenchmarkParallel is Benchmark with concurrent readers, as under load:
// GOMAXPROCS goroutines call GetUpstreams at once (b.RunParallel).
func BenchmarkParallel(b *testing.B, name string, newSource Source) {
	each(b, name, newSource, func(b *testing.B, g getter, req *http.Request, n int) {
		b.RunParallel(func(pb *testing.PB) {
			var local []*reverseproxy.Upstream
			for pb.Next() {
				ups, err := g.get(req)
				if err != nil || len(ups) != n {
					b.Errorf("got %d upstreams, %v; want %d", len(ups), err, n)
					return
				}
				local = ups
			}
			_ = local
		})
	})
}

// each runs body as the sub-benchmark "backends=N/<getter>" for every size,
// with the source under test and the baselines.
func each(b *testing.B, name string, newSource Source, body func(*testing.B, getter, *http.Request, int)) {
	req := Request()
	for _, n := range Sizes {
		getters := append([]getter{{name, newSource(b, n).GetUpstreams}}, baselines(b, n)...)
		for _, g := range getters {
			b.Run(fmt.Sprintf("backends=%d/%s", n, g.name), func(b *testing.B) {
				b.ReportAllocs()
				body(b, g, req, n)
			})
		}
	}
}

// Request is a request as reverse_proxy hands it to GetUpstreams, with a
// replacer in its context.
func Request() *http.Request {
	req := httptest.NewRequest(http.MethodGet, "/", nil)
	ctx := context.WithValue(req.Context(), caddy.ReplacerCtxKey, caddy.NewReplacer())
	return req.WithContext(ctx)
}

// Addr is the IP address of backend i of a benchmarked service, 10.0.x.y.
func Addr(i int) string {
	return fmt.Sprintf("10.0.%d.%d", i/256, i%256)
}

// baselines returns, for n backends, the srv source's cached path
// ("srv-cached", see SRV) and static upstreams ("static": reverse_proxy uses
// the handler's own slice as is).
func baselines(b *testing.B, n int) []getter {
	b.Helper()
	static := make(reverseproxy.UpstreamPool, n)
	for i := range n {
		static[i] = &reverseproxy.Upstream{Dial: Addr(i) + ":8080"}
	}
	return []getter{
		{"srv-cached", SRV(b, n).GetUpstreams},
		{"static", func(*http.Request) ([]*reverseproxy.Upstream, error) { return static, nil }},
	}
}

// SRV provisions an srv source against a DNS server on loopback that answers
// n SRV records, and calls it once so that its cache holds them for the rest
// of the test (refresh 1h). The server stops at cleanup.
func SRV(tb testing.TB, n int) *reverseproxy.SRVUpstreams {
	tb.Helper()
	name := fmt.Sprintf("_http._tcp.web-%d.shop.test.", n)
	handler := dns.HandlerFunc(func(w dns.ResponseWriter, q *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(q)
		if len(q.Question) == 1 && q.Question[0].Qtype == dns.TypeSRV && q.Question[0].Name == name {
			for i := range n {
				m.Answer = append(m.Answer, &dns.SRV{
					Hdr:      dns.RR_Header{Name: name, Rrtype: dns.TypeSRV, Class: dns.ClassINET, Ttl: 3600},
					Priority: 10, Weight: 1, Port: 8080,
					Target: fmt.Sprintf("web-%d.shop.test.", i),
				})
			}
		} else {
			m.Rcode = dns.RcodeNameError
		}
		m.Compress = true
		_ = w.WriteMsg(m)
	})

	// Over TCP, since 100 records do not fit a UDP answer; SRVUpstreams
	// dials its resolver with the network of the address.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	s := &dns.Server{Listener: ln, Handler: handler}
	started := make(chan struct{})
	s.NotifyStartedFunc = func() { close(started) }
	go func() { _ = s.ActivateAndServe() }()
	<-started
	tb.Cleanup(func() { _ = s.Shutdown() })

	srv := &reverseproxy.SRVUpstreams{
		Name:     name,
		Refresh:  caddy.Duration(time.Hour), // the cache stays fresh for the whole run
		Resolver: &reverseproxy.UpstreamResolver{Addresses: []string{"tcp/" + ln.Addr().String()}},
	}
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	tb.Cleanup(cancel)
	if err := srv.Provision(ctx); err != nil {
		tb.Fatal(err)
	}
	ups, err := srv.GetUpstreams(Request())
	if err != nil || len(ups) != n {
		tb.Fatalf("warming the srv cache: %d upstreams, %v; want %d", len(ups), err, n)
	}
	return srv
}
