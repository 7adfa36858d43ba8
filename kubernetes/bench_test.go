package kubernetes

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
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/utils/ptr"
)

// benchSizes are the numbers of backends of the benchmarked Service.
var benchSizes = []int{1, 10, 100}

// benchOtherServices is how many other Services, each with its own upstream
// source, share the benchmarked source's informer set: GetUpstreams must not
// depend on it.
const benchOtherServices = 200

var sink []*reverseproxy.Upstream

// upstreamGetter is one way reverse_proxy obtains its upstreams for a request.
type upstreamGetter struct {
	name string
	get  func(*http.Request) ([]*reverseproxy.Upstream, error)
}

// BenchmarkGetUpstreams compares, for Services of 1, 10 and 100 backends,
// the k8s source answering from its snapshot with what reverse_proxy does for
// static upstreams (use the handler's Upstreams slice) and with the srv
// source's cached path (its DNS answer is cached for the whole run).
func BenchmarkGetUpstreams(b *testing.B) {
	req := benchRequest()
	for _, n := range benchSizes {
		getters := benchGetters(b, n)
		for _, g := range getters {
			b.Run(fmt.Sprintf("backends=%d/%s", n, g.name), func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					ups, err := g.get(req)
					if err != nil || len(ups) != n {
						b.Fatalf("got %d upstreams, %v; want %d", len(ups), err, n)
					}
					sink = ups
				}
			})
		}
	}
}

// BenchmarkGetUpstreamsParallel is BenchmarkGetUpstreams with concurrent
// readers, as under load: GOMAXPROCS goroutines call GetUpstreams at once.
func BenchmarkGetUpstreamsParallel(b *testing.B) {
	req := benchRequest()
	for _, n := range benchSizes {
		getters := benchGetters(b, n)
		for _, g := range getters {
			b.Run(fmt.Sprintf("backends=%d/%s", n, g.name), func(b *testing.B) {
				b.ReportAllocs()
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
	}
}

func benchRequest() *http.Request {
	req := httptest.NewRequest(http.MethodGet, "/", nil)
	ctx := context.WithValue(req.Context(), caddy.ReplacerCtxKey, caddy.NewReplacer())
	return req.WithContext(ctx)
}

// benchGetters sets up, for a Service of n backends, the k8s source (synced
// from a fake clientset), static upstreams and a warmed srv source.
func benchGetters(b *testing.B, n int) []upstreamGetter {
	b.Helper()
	k8s := benchK8sSource(b, n)
	static := &reverseproxy.Handler{Upstreams: make(reverseproxy.UpstreamPool, n)}
	for i := range n {
		static.Upstreams[i] = &reverseproxy.Upstream{Dial: fmt.Sprintf("10.0.%d.%d:8080", i/256, i%256)}
	}
	srv := benchSRVSource(b, n)
	return []upstreamGetter{
		{"k8s", k8s.GetUpstreams},
		{"srv-cached", srv.GetUpstreams},
		{"static", func(*http.Request) ([]*reverseproxy.Upstream, error) { return static.Upstreams, nil }},
	}
}

// benchK8sSource subscribes a source to shop/web, which has n ready
// endpoints, alongside benchOtherServices other sources in the same
// namespace, starts the watches and waits until the source serves all n.
func benchK8sSource(b *testing.B, n int) *KubernetesUpstreams {
	b.Helper()
	es := slice(discoveryv1.AddressTypeIPv4, 8080)
	for i := range n {
		es.Endpoints = append(es.Endpoints, discoveryv1.Endpoint{
			Addresses:  []string{fmt.Sprintf("10.0.%d.%d", i/256, i%256)},
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
		if err := sources[i].subscribe(app, "bench", fp, client, ref, selection{target: targetEndpoints}); err != nil {
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

// benchSRVSource provisions an srv source against a DNS server on loopback
// that answers n SRV records, and calls it once so that its cache holds them
// for the rest of the run.
func benchSRVSource(b *testing.B, n int) *reverseproxy.SRVUpstreams {
	b.Helper()
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
		b.Fatal(err)
	}
	s := &dns.Server{Listener: ln, Handler: handler}
	started := make(chan struct{})
	s.NotifyStartedFunc = func() { close(started) }
	go func() { _ = s.ActivateAndServe() }()
	<-started
	b.Cleanup(func() { _ = s.Shutdown() })

	srv := &reverseproxy.SRVUpstreams{
		Name:     name,
		Refresh:  caddy.Duration(time.Hour), // the cache stays fresh for the whole run
		Resolver: &reverseproxy.UpstreamResolver{Addresses: []string{"tcp/" + ln.Addr().String()}},
	}
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	b.Cleanup(cancel)
	if err := srv.Provision(ctx); err != nil {
		b.Fatal(err)
	}
	ups, err := srv.GetUpstreams(benchRequest())
	if err != nil || len(ups) != n {
		b.Fatalf("warming the srv cache: %d upstreams, %v; want %d", len(ups), err, n)
	}
	return srv
}
