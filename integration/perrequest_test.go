//go:build integration

package integration

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/caddy-discovery/caddy-discovery/integration/harness"
	"github.com/caddy-discovery/caddy-discovery/upstreams"
)

// perRequestProxy is a reverse_proxy whose source (source's JSON, without
// "source") takes the service from the request path's first segment.
func perRequestProxy(source string, fields map[string]any) string {
	fields["source"] = source
	fields["service"] = "{http.request.uri.path.0}"
	b, _ := json.Marshal(fields)
	return fmt.Sprintf(`{"handler": "reverse_proxy", "dynamic_upstreams": %s}`, b)
}

// getPath sends GET path through Caddy and returns the status, the body
// (the backend's name when 200) and the Retry-After header.
func getPath(t *testing.T, cd *harness.Caddy, path string) (int, string, string) {
	t.Helper()
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d%s", cd.Port, path))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(body)), resp.Header.Get("Retry-After")
}

// expectStatus checks what one request for path gets.
func expectStatus(t *testing.T, cd *harness.Caddy, path string, status int, body string) {
	t.Helper()
	got, b, _ := getPath(t, cd, path)
	if got != status || body != "" && b != body {
		t.Errorf("GET %s: %d %q, want %d %q", path, got, b, status, body)
	}
}

// dumped reports whether the admin dump lists a service of the source.
func dumped(source, service string) bool {
	for _, d := range upstreams.Dump() {
		if d.Source == source && strings.HasPrefix(d.Service, service) {
			return true
		}
	}
	return false
}

// TestEtcdPerRequest: one route serves every allowed service that the
// request's first path segment names, each followed through its own etcd
// watch: a service registered after Caddy started answers its first
// request; denied, malformed and unknown names get 404 from
// discovery_error, and an unknown one reaches etcd once (its range reads
// counted at the server); past max_services a new service gets 503 with
// Retry-After; an idle service stops being watched (etcd's own watcher
// count).
func TestEtcdPerRequest(t *testing.T) {
	defer reportFirstAnswers(t, "etcd")
	e := startEtcd(t)
	n := harness.NewNetns(t)
	a, b, c := n.AddAddr(t), n.AddAddr(t), n.AddAddr(t)
	n.Backend(t, "a", a, 8080)
	n.Backend(t, "b", b, 8080)
	n.Backend(t, "c", c, 8080)
	value := func(ip netip.Addr) string { return fmt.Sprintf(`{"Op":0,"Addr":%q}`, netip.AddrPortFrom(ip, 8080)) }
	e.put(t, "shop-a/1", value(a), 0)
	e.put(t, "shop-admin/1", value(c), 0)
	watchersBefore := etcdWatchers(t, e)

	proxy := perRequestProxy("etcd", map[string]any{"allow": []string{"shop-*"}, "deny": []string{"shop-admin"},
		"max_services": 2, "idle_timeout": "2s", "unknown_ttl": "1m"})
	cd := harness.StartCaddyWith(t, &harness.Caddy{Port: etcdCaddyPort, Errors: `{"handler": "discovery_error"}`}, proxy, etcdApp(e.addr))

	start := time.Now()
	expectStatus(t, cd, "/shop-a/", 200, "a")
	t.Logf("per request: shop-a's first request answered in %v", time.Since(start).Round(time.Millisecond))

	// Denied and malformed names: 404, and nothing reaches etcd; an
	// unknown name: 404, and one read of etcd however often it comes.
	ranges := etcdRanges(t, e)
	for _, path := range []string{"/shop-admin/", "/other/", "/SHOP-A/", "/..%2Fshop-a/", "/shop-" + strings.Repeat("x", 300) + "/", "/shop-\u00e9/"} {
		expectStatus(t, cd, path, 404, "Not Found")
	}
	if got := etcdRanges(t, e) - ranges; got != 0 {
		t.Errorf("denied and malformed names made %v range reads of etcd, want none", got)
	}
	for range 10 {
		expectStatus(t, cd, "/shop-none/", 404, "Not Found")
	}
	if got := etcdRanges(t, e) - ranges; got != 1 {
		t.Errorf("10 requests for an unknown name made %v range reads of etcd, want 1", got)
	}
	expectStatus(t, cd, "/shop-%2Fa/", 404, "Not Found") // the segment "shop-": unknown too

	e.put(t, "shop-b/1", value(b), 0) // registered after Caddy started
	expectStatus(t, cd, "/shop-b/", 200, "b")
	expectStatus(t, cd, "/shop-a/x", 200, "a")

	// Over max_services (shop-a and shop-b in use): 503 with Retry-After.
	e.put(t, "shop-c/1", value(c), 0)
	status, _, retry := getPath(t, cd, "/shop-c/")
	if status != 503 || retry == "" {
		t.Errorf("a third service past max_services 2: %d, Retry-After %q; want 503 with Retry-After", status, retry)
	}

	// Idle for idle_timeout: no longer watched, gone from the dump.
	harness.Eventually(t, 10*time.Second, func() error {
		if dumped("etcd", "shop-a/") || dumped("etcd", "shop-b/") {
			return fmt.Errorf("idle services still in the admin dump")
		}
		if w := etcdWatchers(t, e); w > watchersBefore {
			return fmt.Errorf("etcd still counts %d watchers, %d before Caddy", w, watchersBefore)
		}
		return nil
	})
	expectStatus(t, cd, "/shop-c/", 200, "c") // room again
}

// etcdRanges reads etcd's count of range (read) requests, from its /metrics.
func etcdRanges(t *testing.T, e *etcdServer) float64 {
	t.Helper()
	resp, err := http.Get("http://" + e.addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var total float64
	for _, line := range strings.Split(string(body), "\n") {
		if strings.HasPrefix(line, `grpc_server_handled_total{`) && strings.Contains(line, `grpc_method="Range"`) {
			var v float64
			if _, err := fmt.Sscan(line[strings.LastIndexByte(line, ' ')+1:], &v); err == nil {
				total += v
			}
		}
	}
	return total
}

// TestZooKeeperPerRequest: one route serves every allowed Spring Cloud
// Zookeeper service that the request's first path segment names, each
// followed through its own ZooKeeper watches; a service registered through
// Curator after Caddy started answers its first request; denied and
// malformed names get 404 without a lookup, and an unknown one is looked
// up once however often it comes; an idle service stops being followed.
// (ZooKeeper keeps a dropped service's one-shot watches until they fire or
// the session ends: go-zookeeper has no RemoveWatches; the test logs
// ZooKeeper's watch count.)
func TestZooKeeperPerRequest(t *testing.T) {
	defer reportFirstAnswers(t, "zookeeper")
	s := startZooKeeper(t)
	n := harness.NewNetns(t)
	a, b := n.AddAddr(t), n.AddAddr(t)
	n.Backend(t, "a", a, 8080)
	n.Backend(t, "b", b, 8080)
	registerCurator(t, s, "orders", "a", netip.AddrPortFrom(a, 8080))
	watchesBefore := zkWatches(t, s)

	proxy := perRequestProxy("zookeeper", map[string]any{"allow": []string{"orders", "reviews", "x-*"}, "idle_timeout": "2s"})
	cd := harness.StartCaddyWith(t, &harness.Caddy{Port: zkCaddyPort, Errors: `{"handler": "discovery_error"}`}, proxy, zkApp(s.addr))
	start := time.Now()
	expectStatus(t, cd, "/orders/", 200, "a")
	t.Logf("per request: orders' first request answered in %v", time.Since(start).Round(time.Millisecond))

	before := perRequestLookups(t, "zookeeper")
	for _, path := range []string{"/admin/", "/Orders/", "/..%2Forders/", "/orders.x/"} {
		expectStatus(t, cd, path, 404, "Not Found")
	}
	for range 10 {
		expectStatus(t, cd, "/reviews/", 404, "Not Found") // allowed, not registered yet: unknown
	}
	if got := perRequestLookups(t, "zookeeper") - before; got != 1 {
		t.Errorf("denied, malformed and unknown names made %v lookups, want 1 (the unknown one's first)", got)
	}
	// 300 more unknown names: ZooKeeper is left holding no watch for them.
	for i := range 300 {
		expectStatus(t, cd, fmt.Sprintf("/x-%d/", i), 404, "Not Found")
	}
	if w := zkWatches(t, s); w > watchesBefore+5 {
		t.Errorf("after 300 unknown names ZooKeeper holds %d watches, %d before Caddy", w, watchesBefore)
	}

	registerCurator(t, s, "reviews", "b", netip.AddrPortFrom(b, 8080))
	cd.Load(proxy, zkApp(s.addr)) // a reload forgets what was unknown
	expectStatus(t, cd, "/reviews/", 200, "b")
	expectStatus(t, cd, "/orders/", 200, "a")

	harness.Eventually(t, 10*time.Second, func() error {
		if dumped("zookeeper", "/services/orders") || dumped("zookeeper", "/services/reviews") {
			return fmt.Errorf("idle services still in the admin dump")
		}
		return nil
	})
	t.Logf("per request: ZooKeeper watches before Caddy %d, after the idle services were dropped %d", watchesBefore, zkWatches(t, s))
}

// perRequestLookups counts the first lookups of services chosen per request
// that the source kind made (each observed once in first_answer_seconds).
// reportFirstAnswers prints how long the first lookups of services chosen
// per request waited for the registry's first answer, so far in this
// process (caddy_discovery_per_request_first_answer_seconds): the README's
// first-request latency per source.
func reportFirstAnswers(t *testing.T, kind string) {
	t.Helper()
	h := publishShareOf(t, "caddy_discovery_per_request_first_answer_seconds", "source", kind)
	fmt.Printf("%s: %d first answers of services chosen per request, mean %v, %d within 5ms\n",
		kind, h.count, time.Duration(h.sum/float64(max(h.count, 1))*float64(time.Second)).Round(10*time.Microsecond), h.within5ms)
}

func perRequestLookups(t *testing.T, kind string) float64 {
	t.Helper()
	return discoveryMetric(t, "caddy_discovery_per_request_first_answer_seconds", "source", kind)
}

// TestConsulPerRequest: one route serves every allowed Consul service that
// the request's first path segment names, each through its own blocking
// query; one registered after Caddy started answers its first request;
// denied and malformed names get 404 without a query, an unknown one is
// queried once however often it comes; an idle one is dropped.
func TestConsulPerRequest(t *testing.T) {
	defer reportFirstAnswers(t, "consul")
	c := sharedConsul(t)
	n := harness.NewNetns(t)
	a, b := n.AddAddr(t), n.AddAddr(t)
	n.Backend(t, "a", a, 8080)
	n.Backend(t, "b", b, 8080)
	ia := consulInstance{id: "pr-cart-1", service: "pr-cart", addr: a, port: 8080}
	ib := consulInstance{id: "pr-stock-1", service: "pr-stock", addr: b, port: 8080}
	c.register(t, ia)
	t.Cleanup(func() { c.forget(ia.id, ib.id) })

	proxy := perRequestProxy("consul", map[string]any{"allow": []string{"pr-*"}, "deny": []string{"pr-admin"}, "idle_timeout": "2s"})
	cd := harness.StartCaddyWith(t, &harness.Caddy{Port: consulCaddyPort, Errors: `{"handler": "discovery_error"}`}, proxy, c.app())
	start := time.Now()
	expectStatus(t, cd, "/pr-cart/", 200, "a")
	t.Logf("per request: pr-cart's first request answered in %v", time.Since(start).Round(time.Millisecond))

	before := perRequestLookups(t, "consul")
	for _, path := range []string{"/pr-admin/", "/consul/", "/pr-cart%20x/", "/..%2Fpr-cart/"} {
		expectStatus(t, cd, path, 404, "Not Found")
	}
	for range 10 {
		expectStatus(t, cd, "/pr-stock/", 404, "Not Found") // allowed, not registered yet
	}
	if got := perRequestLookups(t, "consul") - before; got != 1 {
		t.Errorf("denied, malformed and unknown names made %v queries, want 1 (the unknown one's first)", got)
	}
	c.register(t, ib)
	cd.Load(proxy, c.app()) // a reload forgets what was unknown
	expectStatus(t, cd, "/pr-stock/", 200, "b")
	expectStatus(t, cd, "/pr-cart/", 200, "a")
	harness.Eventually(t, 10*time.Second, func() error {
		if dumped("consul", "pr-cart") || dumped("consul", "pr-stock") {
			return fmt.Errorf("idle services still in the admin dump")
		}
		return nil
	})
}

// TestEurekaPerRequest: one route serves every allowed Eureka application
// that the request's first path segment names, all from the one copy of
// the registry that the feed keeps (no request to Eureka per application);
// denied and malformed names get 404, an application the registry does
// not have gets 404 and is remembered for unknown_ttl; one registered
// after Caddy started answers once the feed has its delta.
func TestEurekaPerRequest(t *testing.T) {
	defer reportFirstAnswers(t, "eureka")
	sharedPolaris(t)
	n := harness.NewNetns(t)
	a, b := n.AddAddr(t), n.AddAddr(t)
	n.Backend(t, "a", a, 8080)
	n.Backend(t, "b", b, 8080)
	base := fmt.Sprintf("http://127.0.0.1:%d/eureka", sharedEurekaPort)
	newEurekaRegistrar(t, base, "PR-CART").registerWithMetadata("pr-cart-a", a.String(), 8080, nil)

	// unknown_ttl 2s: Eureka learns of a registration within its cache
	// refresh and Caddy within a refresh_interval (1 s each here), so a name
	// looked up too early is unknown for a while.
	proxy := perRequestProxy("eureka", map[string]any{"allow": []string{"PR-*"}, "idle_timeout": "2s", "unknown_ttl": "2s"})
	proxy = strings.Replace(proxy, `"service":`, `"app":`, 1) // eureka names its field app
	cd := harness.StartCaddyWith(t, &harness.Caddy{Port: eurekaCaddyPort, Errors: `{"handler": "discovery_error"}`}, proxy, eurekaServerApp())
	harness.Eventually(t, 15*time.Second, func() error {
		if status, body, _ := getPath(t, cd, "/PR-CART/"); status != 200 || body != "a" {
			return fmt.Errorf("GET /PR-CART/: %d %q", status, body)
		}
		return nil
	})
	for _, path := range []string{"/ADMIN/", "/pr-cart/", "/PR-CART%3Fx/", "/..%2FPR-CART/"} {
		expectStatus(t, cd, path, 404, "Not Found")
	}
	before := perRequestLookups(t, "eureka")
	for range 10 {
		expectStatus(t, cd, "/PR-STOCK/", 404, "Not Found") // allowed, not registered
	}
	if got := perRequestLookups(t, "eureka") - before; got != 1 {
		t.Errorf("an unknown application was looked up %v times, want once", got)
	}
	newEurekaRegistrar(t, base, "PR-STOCK").registerWithMetadata("pr-stock-b", b.String(), 8080, nil)
	cd.Load(proxy, eurekaServerApp()) // a reload forgets what was unknown
	harness.Eventually(t, 15*time.Second, func() error {
		if status, body, _ := getPath(t, cd, "/PR-STOCK/"); status != 200 || body != "b" {
			return fmt.Errorf("GET /PR-STOCK/: %d %q", status, body)
		}
		return nil
	})
	harness.Eventually(t, 10*time.Second, func() error {
		if dumped("eureka", "PR-CART") || dumped("eureka", "PR-STOCK") {
			return fmt.Errorf("idle applications still in the admin dump")
		}
		return nil
	})
}

// TestNacosPerRequest: one route serves every allowed Nacos service that the
// request's first path segment names, each through its own subscription of
// the one SDK client; denied and malformed names get 404 without a
// subscription; a service registered after Caddy started answers; an idle
// one is unsubscribed.
func TestNacosPerRequest(t *testing.T) {
	defer reportFirstAnswers(t, "nacos")
	p := sharedPolaris(t)
	n := harness.NewNetns(t)
	reg := newRegistrar(t, p, "")
	a, b := n.AddAddr(t), n.AddAddr(t)
	n.Backend(t, "a", a, 8080)
	n.Backend(t, "b", b, 8080)
	reg.put(up("DEFAULT_GROUP", "pr-cart", a, 8080))

	proxy := perRequestProxy("nacos", map[string]any{"allow": []string{"pr-*"}, "idle_timeout": "2s", "unknown_ttl": "1s"})
	cd := harness.StartCaddyWith(t, &harness.Caddy{Port: nacosCaddyPort, Errors: `{"handler": "discovery_error"}`}, proxy, nacosServerApp(p.port))
	harness.Eventually(t, 15*time.Second, func() error {
		if status, body, _ := getPath(t, cd, "/pr-cart/"); status != 200 || body != "a" {
			return fmt.Errorf("GET /pr-cart/: %d %q", status, body)
		}
		return nil
	})
	before := perRequestLookups(t, "nacos")
	for _, path := range []string{"/admin/", "/pr-a%20b/", "/..%2Fpr-cart/", "/pr-cart%0A/"} {
		expectStatus(t, cd, path, 404, "Not Found")
	}
	if got := perRequestLookups(t, "nacos") - before; got != 0 {
		t.Errorf("denied and malformed names made %v subscriptions, want none", got)
	}
	// A service Nacos does not have: its subscription's first list is
	// empty, which Nacos sends for a service without instances too; the
	// source's diagnosis finds that the group has no such service before
	// the first list is published, so the first request gets 404.
	start := time.Now()
	expectStatus(t, cd, "/pr-none/", 404, "Not Found")
	t.Logf("per request: a service Nacos does not have: 404 in %v", time.Since(start).Round(time.Millisecond))

	reg.put(up("DEFAULT_GROUP", "pr-stock", b, 8080))
	harness.Eventually(t, 15*time.Second, func() error {
		if status, body, _ := getPath(t, cd, "/pr-stock/"); status != 200 || body != "b" {
			return fmt.Errorf("GET /pr-stock/: %d %q", status, body)
		}
		return nil
	})
	harness.Eventually(t, 10*time.Second, func() error {
		if dumped("nacos", "DEFAULT_GROUP@@pr-cart") || dumped("nacos", "DEFAULT_GROUP@@pr-stock") {
			return fmt.Errorf("idle services still in the admin dump")
		}
		return nil
	})
}

// TestKubernetesPerRequest: one route serves every allowed Service of a
// namespace that the request's first path segment names, from the
// namespace's one informer set; a Service created after Caddy started
// answers its first request; denied and malformed names get 404, an
// unknown Service 404 (remembered); an idle one is dropped.
func TestKubernetesPerRequest(t *testing.T) {
	defer reportFirstAnswers(t, "k8s")
	const ns = "perreq"
	k := sharedKube(t)
	net := harness.NewNetns(t)
	k.Namespace(t, ns)
	k.Node(t, ns+"-node", "z1", net.Gateway, netip.Addr{})
	service := func(name string) {
		svc := webService(ns)
		svc.Name, svc.Spec.Selector = name, map[string]string{"app": name}
		k.Service(t, svc)
	}
	pod := func(app, name string) {
		ip := net.AddAddr(t)
		net.Backend(t, name, ip, 8080)
		k.Pod(t, ns, name, ns+"-node", map[string]string{"app": app}, ip, true)
	}
	service("cart")
	pod("cart", "cart-0")

	proxy := perRequestProxy("k8s", map[string]any{"allow": []string{ns + "/*"}, "deny": []string{ns + "/admin"},
		"idle_timeout": "2s", "kubeconfig": k.Dir + "/admin.kubeconfig", "port": "http"})
	proxy = strings.Replace(proxy, `"{http.request.uri.path.0}"`, `"`+ns+`/{http.request.uri.path.0}"`, 1)
	cd := harness.StartCaddyWith(t, &harness.Caddy{Port: caddyPort, Errors: `{"handler": "discovery_error"}`}, proxy, "")
	harness.Eventually(t, 15*time.Second, func() error {
		if status, body, _ := getPath(t, cd, "/cart/"); status != 200 || body != "cart-0" {
			return fmt.Errorf("GET /cart/: %d %q", status, body)
		}
		return nil
	})
	before := perRequestLookups(t, "k8s")
	for _, path := range []string{"/admin/", "/Cart/", "/cart.x/", "/..%2Fcart/", "/cart%3A80/"} {
		expectStatus(t, cd, path, 404, "Not Found")
	}
	for range 10 {
		expectStatus(t, cd, "/stock/", 404, "Not Found") // no such Service yet
	}
	if got := perRequestLookups(t, "k8s") - before; got > 1 {
		t.Errorf("denied, malformed and unknown names made %v lookups, want at most 1", got)
	}
	service("stock")
	pod("stock", "stock-0")
	cd.Load(proxy, "") // a reload forgets what was unknown
	harness.Eventually(t, 15*time.Second, func() error {
		if status, body, _ := getPath(t, cd, "/stock/"); status != 200 || body != "stock-0" {
			return fmt.Errorf("GET /stock/: %d %q", status, body)
		}
		return nil
	})
	harness.Eventually(t, 10*time.Second, func() error {
		if dumped("k8s", ns+"/cart") || dumped("k8s", ns+"/stock") {
			return fmt.Errorf("idle Services still in the admin dump")
		}
		return nil
	})
}

// TestKubernetesSelectors: namespaces and label_selector bound what one
// route choosing namespace and Service per request can reach, and hold on
// the API server's watch: a Service without the label, and one in a
// namespace outside the selector, get 404; the namespace's cache holds
// the selected Services only (the not-found message lists it); a label
// added or removed arrives through the watch; and every list and watch
// Caddy made (the apiserver's audit log) carries the label selector and
// stays within the selected namespaces.
func TestKubernetesSelectors(t *testing.T) {
	k := sharedKube(t)
	net := harness.NewNetns(t)
	k.Namespace(t, "sel-a")
	k.Namespace(t, "sel-x")
	k.Node(t, "sel-node", "z1", net.Gateway, netip.Addr{})
	exposed := map[string]string{"expose": "gateway"}
	service := func(ns, name string, labels map[string]string) {
		svc := webService(ns)
		svc.Name, svc.Labels, svc.Spec.Selector = name, labels, map[string]string{"app": name}
		k.Service(t, svc)
		ip := net.AddAddr(t)
		net.Backend(t, ns+"/"+name, ip, 8080)
		k.Pod(t, ns, name+"-0", "sel-node", map[string]string{"app": name}, ip, true)
	}
	relabel := func(ns, name string, labels map[string]string) {
		svc, err := k.Client.CoreV1().Services(ns).Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		svc.Labels = labels
		if _, err := k.Client.CoreV1().Services(ns).Update(context.Background(), svc, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	service("sel-a", "web", exposed)
	service("sel-a", "hidden", nil)
	service("sel-x", "web", exposed)

	fields, _ := json.Marshal(map[string]any{"source": "k8s", "service": "{http.request.uri.path.0}/{http.request.uri.path.1}", "port": "http",
		"allow": []string{"*/*"}, "namespaces": map[string]any{"match": []string{"sel-[a-m]"}}, "label_selector": "expose=gateway",
		"unknown_ttl": "1s", "kubeconfig": k.Dir + "/admin.kubeconfig"})
	logFile := filepath.Join(t.TempDir(), "caddy.log")
	cd := harness.StartCaddyWith(t, &harness.Caddy{Port: caddyPort, Errors: `{"handler": "discovery_error"}`, LogFile: logFile},
		fmt.Sprintf(`{"handler": "reverse_proxy", "dynamic_upstreams": %s}`, fields), "")
	reaches := func(path, body string) func() error {
		return func() error {
			if status, b, _ := getPath(t, cd, path); status != 200 || b != body {
				return fmt.Errorf("GET %s: %d %q, want 200 %q", path, status, b, body)
			}
			return nil
		}
	}
	harness.Eventually(t, 15*time.Second, reaches("/sel-a/web/", "sel-a/web"))
	expectStatus(t, cd, "/sel-a/hidden/", 404, "Not Found")
	expectStatus(t, cd, "/sel-x/web/", 404, "Not Found")
	harness.Eventually(t, 5*time.Second, func() error {
		if log := harness.ReadFile(logFile); !strings.Contains(log, `matching label_selector \"expose=gateway\": [sel-a/web])`) {
			return errors.New(`Caddy's log does not say that the cache of sel-a holds sel-a/web alone`)
		}
		return nil
	})

	relabel("sel-a", "hidden", exposed) // Kubernetes copies it to the Service's EndpointSlice
	harness.Eventually(t, 10*time.Second, reaches("/sel-a/hidden/", "sel-a/hidden"))
	relabel("sel-a", "web", map[string]string{"expose": "no"})
	harness.Eventually(t, 10*time.Second, func() error {
		if status, _, _ := getPath(t, cd, "/sel-a/web/"); status != 404 {
			return fmt.Errorf("GET /sel-a/web/ after its label went: %d, want 404", status)
		}
		return nil
	})

	uris := k.Watched(t, func(uri string) bool { return strings.Contains(uri, "/namespaces/sel-") })
	var watches []string
	for _, uri := range uris {
		if !strings.Contains(uri, "labelSelector=expose%3Dgateway") || !strings.Contains(uri, "/namespaces/sel-a/") {
			t.Errorf("Caddy asked the API server for %s: want only namespace sel-a, with labelSelector=expose=gateway", uri)
		}
		if strings.Contains(uri, "watch=true") {
			watches = append(watches, uri)
		}
	}
	if !slices.ContainsFunc(watches, func(u string) bool { return strings.Contains(u, "/services?") }) ||
		!slices.ContainsFunc(watches, func(u string) bool { return strings.Contains(u, "/endpointslices?") }) {
		t.Errorf("no watch of both services and endpointslices in the audit log: %q", uris)
	}
	t.Logf("lists and watches in the audit log: %q", uris)
}

// TestPerRequestOptInMarks: with opt-in marks (a Consul tag, etcd
// metadata), like Traefik's exposedByDefault=false, a route choosing the
// service per request reaches only services whose instances bear the mark:
// an unmarked one gets 404, as an unknown one does; a mark added is seen at
// the next lookup (unknown_ttl), and a mark removed from a followed service
// arrives through the blocking query or the watch and makes it 404 again.
func TestPerRequestOptInMarks(t *testing.T) {
	n := harness.NewNetns(t)
	a, b := n.AddAddr(t), n.AddAddr(t)
	n.Backend(t, "a", a, 8080)
	n.Backend(t, "b", b, 8080)
	// follow checks the marked service a, the unmarked b; then mark(true)
	// marks b and mark(false) unmarks it again.
	follow := func(t *testing.T, cd *harness.Caddy, open, closed string, mark func(bool)) {
		harness.Eventually(t, 10*time.Second, func() error {
			if status, body, _ := getPath(t, cd, "/"+open+"/"); status != 200 || body != "a" {
				return fmt.Errorf("GET /%s/: %d %q, want 200 a", open, status, body)
			}
			return nil
		})
		expectStatus(t, cd, "/"+closed+"/", 404, "Not Found")
		mark(true)
		harness.Eventually(t, 10*time.Second, func() error {
			if status, body, _ := getPath(t, cd, "/"+closed+"/"); status != 200 || body != "b" {
				return fmt.Errorf("GET /%s/ once marked: %d %q, want 200 b", closed, status, body)
			}
			return nil
		})
		mark(false)
		harness.Eventually(t, 5*time.Second, func() error {
			if status, _, _ := getPath(t, cd, "/"+closed+"/"); status != 404 {
				return fmt.Errorf("GET /%s/ once unmarked: %d, want 404", closed, status)
			}
			return nil
		})
	}
	t.Run("consul tag", func(t *testing.T) {
		c := sharedConsul(t)
		open := consulInstance{id: "optin-open-1", service: "optin-open", addr: a, port: 8080, tags: []string{"gateway"}}
		closed := consulInstance{id: "optin-closed-1", service: "optin-closed", addr: b, port: 8080, tags: []string{"internal"}}
		c.register(t, open)
		c.register(t, closed)
		t.Cleanup(func() { c.forget(open.id, closed.id) })
		proxy := perRequestProxy("consul", map[string]any{"allow": []string{"optin-*"}, "tags": []string{"gateway"}, "unknown_ttl": "1s"})
		cd := harness.StartCaddyWith(t, &harness.Caddy{Port: consulCaddyPort, Errors: `{"handler": "discovery_error"}`}, proxy, c.app())
		follow(t, cd, "optin-open", "optin-closed", func(on bool) {
			closed.tags = []string{"internal"}
			if on {
				closed.tags = append(closed.tags, "gateway")
			}
			c.register(t, closed)
		})
	})
	t.Run("etcd metadata", func(t *testing.T) {
		e := startEtcd(t)
		value := func(ip netip.Addr, expose bool) string {
			return fmt.Sprintf(`{"Op":0,"Addr":%q,"Metadata":{"expose":%t}}`, netip.AddrPortFrom(ip, 8080), expose)
		}
		e.put(t, "optin-open/1", value(a, true), 0)
		e.put(t, "optin-closed/1", value(b, false), 0)
		proxy := perRequestProxy("etcd", map[string]any{"allow": []string{"optin-*"}, "metadata": map[string]string{"expose": "true"}, "unknown_ttl": "1s"})
		cd := harness.StartCaddyWith(t, &harness.Caddy{Port: etcdCaddyPort, Errors: `{"handler": "discovery_error"}`}, proxy, etcdApp(e.addr))
		follow(t, cd, "optin-open", "optin-closed", func(on bool) { e.put(t, "optin-closed/1", value(b, on), 0) })
	})
}
