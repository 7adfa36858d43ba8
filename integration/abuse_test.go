//go:build integration

package integration

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddy-discovery/caddy-discovery/integration/harness"
)

// abuseCase is one registry of TestPerRequestAbuse.
type abuseCase struct {
	source string
	names  int            // distinct names sent after the warm-up
	fields map[string]any // the source's JSON but "source" and the reference
	ref    string         // the reference, with {name} for the request's choice
	app    string         // the app's config, "" for none
	// requests is what reached the registry so far, as the server or a
	// forwarder in front of it counts it; limit is the most that sending
	// names may add, having taken took: about one request per name (each
	// source's), with 5% for the lookups that a loaded machine drops only
	// after their watch's 100 ms settle (Runner.Settle), so that it
	// starts.
	requests func() float64
	counted  string // what requests counts
	limit    func(names int, took time.Duration) float64
	after    func() // a check once the names are sent; may be nil
}

// TestPerRequestAbuse: for each registry, a Caddy process (this tree's
// build) with one route whose service the request's first path segment
// chooses (allow shop-*, max_services 50, max_lookups 8) gets 1,000
// distinct names as a warm-up, then 10,000 more (Nacos: 2,000, each a
// subscription) that the registry does not have, and crafted ones (`..`,
// `%2F`, upper case, unicode, 300 characters), 8 requests at a time. Every
// answer is 404, or 503 past max_lookups; Caddy never follows more than
// max_services (its own gauge, read every 500 names); its RSS after the
// names is within 16 MiB of what it was after the warm-up (the unknown
// names it remembers are bounded, nothing is kept per name); and the
// registry's requests stay within about one per name, counted at the
// server (etcd's range reads, ZooKeeper's packets received, the API
// server's audit log of lists and watches) or by a forwarder in front of
// it (Consul, Eureka). Nacos speaks gRPC, which no forwarder here reads:
// its subscriptions are Caddy's own count of first lookups.
func TestPerRequestAbuse(t *testing.T) {
	cases := []func(t *testing.T) abuseCase{
		func(t *testing.T) abuseCase {
			e := startEtcd(t)
			watchers := etcdWatchers(t, e)
			return abuseCase{source: "etcd", names: 10000, ref: "{name}", app: etcdApp(e.addr),
				requests: func() float64 { return etcdRanges(t, e) }, counted: "etcd's range reads",
				limit: func(names int, _ time.Duration) float64 { return 1.05*float64(names) + 100 },
				after: func() {
					harness.Eventually(t, 10*time.Second, func() error {
						if w := etcdWatchers(t, e) - watchers; w > 0 {
							return fmt.Errorf("etcd still counts %d of Caddy's watchers", w)
						}
						return nil
					})
				}}
		},
		func(t *testing.T) abuseCase {
			s := startZooKeeperWith(t, "4lw.commands.whitelist=wchs,srvr")
			return abuseCase{source: "zookeeper", names: 10000, ref: "{name}", app: zkApp(s.addr),
				requests: func() float64 { return zkReceived(t, s) }, counted: "ZooKeeper's packets received (srvr), pings included",
				limit: func(names int, took time.Duration) float64 { return 1.05*float64(names) + took.Seconds() + 100 },
				after: func() {
					if w := zkWatches(t, s); w > 0 {
						t.Errorf("ZooKeeper holds %d watches after unknown names only", w)
					}
				}}
		},
		func(t *testing.T) abuseCase {
			c := sharedConsul(t)
			f := newCountingProxy(t, fmt.Sprintf("127.0.0.1:%d", c.port))
			return abuseCase{source: "consul", names: 10000, ref: "{name}", app: consulApp(f.port, c.readToken, ""),
				requests: f.count, counted: "HTTP requests to the agent (a forwarder)",
				// a blocking query per name, and the read of all its instances
				// that tells an unknown service from one without passing ones
				limit: func(names int, _ time.Duration) float64 { return 2.1*float64(names) + 100 },
				after: func() { t.Logf("abuse: consul: requests by path: %s", f.paths()) }}
		},
		func(t *testing.T) abuseCase {
			sharedPolaris(t)
			f := newCountingProxy(t, fmt.Sprintf("127.0.0.1:%d", sharedEurekaPort))
			app := fmt.Sprintf(`"eureka": {"servers": {"default": {"urls": ["http://127.0.0.1:%d/eureka"], "refresh_interval": "1s"}}}`, f.port)
			return abuseCase{source: "eureka", names: 10000, ref: "{name}", app: app,
				requests: f.count, counted: "HTTP requests to Eureka (a forwarder)",
				// the poller's, one a second whatever the names
				limit: func(_ int, took time.Duration) float64 { return 2*took.Seconds() + 5 }}
		},
		func(t *testing.T) abuseCase {
			k := sharedKube(t)
			k.Namespace(t, "abuse")
			watched := func() float64 {
				return float64(len(k.Watched(t, func(uri string) bool { return strings.Contains(uri, "/namespaces/abuse/") })))
			}
			return abuseCase{source: "k8s", names: 10000, ref: "abuse/{name}",
				fields:   map[string]any{"kubeconfig": k.Dir + "/admin.kubeconfig", "port": "http"},
				requests: watched, counted: "lists and watches of the namespace (the API server's audit log)",
				// the namespace's informers, started by the warm-up
				limit: func(int, time.Duration) float64 { return 4 }}
		},
		func(t *testing.T) abuseCase {
			p := sharedPolaris(t)
			return abuseCase{source: "nacos", names: 2000, ref: "{name}", app: nacosServerApp(p.port),
				counted:  "subscriptions (Caddy's count of first lookups: gRPC is not forwarded here)",
				requests: nil, // set below, from the process
				limit:    func(names int, _ time.Duration) float64 { return 1.05*float64(names) + 50 }}
		},
	}
	for _, setup := range cases {
		t.Run("", func(t *testing.T) { abuse(t, setup(t)) })
	}
}

func abuse(t *testing.T, c abuseCase) {
	fields := map[string]any{"allow": []string{"shop-*"}, "max_services": 50, "max_lookups": 8}
	if strings.Contains(c.ref, "/") {
		fields["allow"] = []string{c.ref[:strings.IndexByte(c.ref, '/')] + "/shop-*"}
	}
	for k, v := range c.fields {
		fields[k] = v
	}
	key := "service"
	if c.source == "eureka" {
		key = "app"
	}
	fields["source"], fields[key] = c.source, strings.Replace(c.ref, "{name}", "{http.request.uri.path.0}", 1)
	proxy, _ := json.Marshal(fields)
	apps := ""
	if c.app != "" {
		apps = ", " + c.app
	}
	admin, site := freeAddr(t), freeAddr(t)
	cfg := fmt.Sprintf(`{
		"admin": {"listen": %q},
		"logging": {"logs": {"default": {"level": "WARN", "writer": {"output": "stderr"}}}},
		"apps": {"http": {"servers": {"abuse": {"listen": [%q], "automatic_https": {"disable": true},
			"routes": [{"handle": [{"handler": "reverse_proxy", "dynamic_upstreams": %s}]}],
			"errors": {"routes": [{"handle": [{"handler": "discovery_error"}]}]}}}}%s}
	}`, admin, site, proxy, apps)
	file := t.TempDir() + "/caddy.json"
	if err := os.WriteFile(file, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	proc := harness.StartProcess(t, harness.BuildCaddy(t), file, admin)
	t.Cleanup(func() {
		if t.Failed() {
			out := proc.Output.String()
			t.Logf("caddy's output (last 4 KB):\n%s", out[max(0, len(out)-4096):])
		}
	})
	if c.requests == nil { // Nacos: Caddy's own count
		c.requests = func() float64 {
			return scrapeMetrics(t, proc).must(t, "caddy_discovery_per_request_first_answer_seconds_count", "source", c.source)
		}
	}
	followed := func() float64 {
		v, _, err := scrapeMetrics(t, proc).value("caddy_discovery_per_request_services", "source", c.source)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}

	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 8}}
	t.Cleanup(client.CloseIdleConnections)
	statuses := map[int]int{}
	maxFollowed := 0.0
	send := func(names []string) {
		work := make(chan string)
		var mu sync.Mutex
		var wg sync.WaitGroup
		for range 8 {
			wg.Go(func() {
				for name := range work {
					resp, err := client.Get("http://" + site + "/" + name + "/")
					if err != nil {
						t.Error(err)
						continue
					}
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					mu.Lock()
					statuses[resp.StatusCode]++
					mu.Unlock()
				}
			})
		}
		for i, name := range names {
			work <- name
			if i%500 == 0 {
				maxFollowed = max(maxFollowed, followed())
			}
		}
		close(work)
		wg.Wait()
		maxFollowed = max(maxFollowed, followed())
	}
	names := func(prefix string, n int) []string {
		crafted := []string{"..", "%2F", "SHOP-A", "shop-%C3%A9", "shop-" + strings.Repeat("x", 300), "shop-%00", "shop-a%2F..%2Fb"}
		var out []string
		for i := range n {
			out = append(out, fmt.Sprintf("%s%d", prefix, i))
			if i%len(crafted) == 0 {
				out = append(out, crafted[(i/len(crafted))%len(crafted)])
			}
		}
		return out
	}

	send(names("shop-warm-", 1000))
	pid := proc.Pid()
	rss0, requests0 := procRSS(t, pid), c.requests()
	start := time.Now()
	batch := names("shop-", c.names)
	send(batch)
	took := time.Since(start)
	rss1, requests := procRSS(t, pid), c.requests()-requests0
	t.Logf("abuse: %s: %d names in %v: statuses %v; %s: %.0f (limit %.0f); services followed at most %.0f; RSS %.1f MiB after the warm-up, %.1f MiB after",
		c.source, len(batch), took.Round(time.Millisecond), statuses, c.counted, requests, c.limit(c.names, took), maxFollowed, rss0/(1<<20), rss1/(1<<20))
	if statuses[200] > 0 || statuses[404]+statuses[503] != len(batch)+len(names("", 1000)) {
		t.Errorf("statuses %v: want only 404 and 503", statuses)
	}
	if maxFollowed > 50 {
		t.Errorf("Caddy followed %.0f services at once, over max_services 50", maxFollowed)
	}
	if limit := c.limit(c.names, took); requests > limit {
		t.Errorf("%s: %.0f for %d unknown names, over %.0f", c.counted, requests, c.names, limit)
	}
	if grown := rss1 - rss0; grown > 16<<20 {
		t.Errorf("Caddy's RSS grew by %.1f MiB over %d names", grown/(1<<20), c.names)
	}
	if c.after != nil {
		c.after()
	}
}

// procRSS is a process's resident set size in bytes (VmRSS).
func procRSS(t *testing.T, pid int) float64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb * 1024
		}
	}
	t.Fatalf("no VmRSS in /proc/%d/status", pid)
	return 0
}

// zkReceived asks ZooKeeper (the srvr command) how many packets it has
// received from its clients.
func zkReceived(t *testing.T, s *zkServer) float64 {
	t.Helper()
	return zkStat(t, s, "srvr", "Received:")
}

// countingProxy is an HTTP forwarder in front of a registry's HTTP API that
// counts the requests it forwards.
type countingProxy struct {
	port     int
	requests atomic.Int64

	mu     sync.Mutex
	byPath map[string]int // by the path's first three segments
}

func newCountingProxy(t *testing.T, target string) *countingProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &countingProxy{port: ln.Addr().(*net.TCPAddr).Port, byPath: map[string]int{}}
	rp := httputil.NewSingleHostReverseProxy(&url.URL{Scheme: "http", Host: target})
	rp.FlushInterval = -1
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.requests.Add(1)
		parts := strings.SplitN(strings.TrimPrefix(r.URL.Path, "/"), "/", 4)
		p.mu.Lock()
		p.byPath[r.Method+" /"+strings.Join(parts[:min(3, len(parts))], "/")]++
		p.mu.Unlock()
		rp.ServeHTTP(w, r)
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return p
}

func (p *countingProxy) count() float64 { return float64(p.requests.Load()) }

// paths lists the requests counted so far by path.
func (p *countingProxy) paths() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return fmt.Sprint(p.byPath)
}
