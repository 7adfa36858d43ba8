//go:build integration

package integration

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"maps"
	"math/big"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	etcdnaming "go.etcd.io/etcd/client/v3/naming/endpoints"

	"github.com/caddy-discovery/caddy-discovery/integration/harness"
	"github.com/caddy-discovery/caddy-discovery/upstreams"
)

// Ports of the etcd tests: Caddy's sites, and etcd's client and peer ports
// (below the kernel's ephemeral range, apart from the Kubernetes tests'
// etcd).
const (
	etcdCaddyPort  = 18105
	etcdClientPort = 22379
	etcdPeerPort   = 22380
)

// etcdServer is a real etcd (Debian's etcd-server) on loopback, with a
// client of the test's own.
type etcdServer struct {
	*harness.Server
	addr string
	cli  *clientv3.Client
}

// startEtcd starts etcd in a new data directory, stopped (and the
// directory removed) when the test ends.
func startEtcd(t *testing.T) *etcdServer { return startEtcdWith(t, nil, nil) }

// startEtcdWith starts etcd serving clients over TLS with tlsArgs (etcd's
// --cert-file and so on; nil: plain), its test client connecting with
// clientTLS.
func startEtcdWith(t *testing.T, tlsArgs []string, clientTLS *tls.Config) *etcdServer {
	t.Helper()
	if err := harness.CheckPorts(etcdClientPort, etcdPeerPort); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	scheme := "http"
	if tlsArgs != nil {
		scheme = "https"
	}
	client := fmt.Sprintf("%s://127.0.0.1:%d", scheme, etcdClientPort)
	peer := fmt.Sprintf("http://127.0.0.1:%d", etcdPeerPort)
	srv := harness.StartServer(t, dir, "etcd", "etcd (Debian's etcd-server)", append([]string{"etcd", "--name", "caddy-test", "--data-dir", filepath.Join(dir, "data"),
		"--listen-client-urls", client, "--advertise-client-urls", client,
		"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
		"--initial-cluster", "caddy-test=" + peer, "--unsafe-no-fsync"}, tlsArgs...)...)
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{client}, DialTimeout: 5 * time.Second, TLS: clientTLS})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	harness.Eventually(t, 20*time.Second, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_, err := cli.Status(ctx, client)
		return err
	})
	return &etcdServer{Server: srv, addr: fmt.Sprintf("127.0.0.1:%d", etcdClientPort), cli: cli}
}

// put writes a key, with a lease if not 0.
func (e *etcdServer) put(t *testing.T, key, value string, lease clientv3.LeaseID) {
	t.Helper()
	var opts []clientv3.OpOption
	if lease != 0 {
		opts = append(opts, clientv3.WithLease(lease))
	}
	if _, err := e.cli.Put(context.Background(), key, value, opts...); err != nil {
		t.Fatal(err)
	}
}

// etcdProxy is a reverse_proxy handler with the etcd source.
func etcdProxy(source map[string]any) string {
	source["source"] = "etcd"
	b, _ := json.Marshal(source)
	return fmt.Sprintf(`{"handler": "reverse_proxy", "load_balancing": {"selection_policy": {"policy": "round_robin"}}, "dynamic_upstreams": %s}`, b)
}

// etcdApp is the etcd app with the default server at addr.
func etcdApp(addr string) string {
	return fmt.Sprintf(`"etcd": {"servers": {"default": {"endpoints": [%q]}}}`, addr)
}

// expectDump polls until the admin dump has one source of the kind source
// ("etcd"), listing exactly the given targets with their weights, and
// requests reach exactly the given backends; it logs how long that took.
func expectDump(t *testing.T, cd *harness.Caddy, source string, timeout time.Duration, name string, weights map[string]float64, backends ...string) {
	t.Helper()
	start := time.Now()
	harness.Eventually(t, timeout, func() error {
		got := map[string]float64{}
		n := 0
		for _, e := range upstreams.Dump() {
			if e.Source != source {
				continue
			}
			n++
			for _, u := range e.Upstreams {
				got[u.Dial] = u.Weight
			}
		}
		if n != 1 || !maps.Equal(got, weights) {
			return fmt.Errorf("%s: %d %s sources in the admin dump with targets %v, want one with %v", name, n, source, got, weights)
		}
		want := slices.Sorted(slices.Values(backends))
		if spread := cd.Spread(6 * max(len(backends), 1)); !slices.Equal(harness.Names(spread), want) {
			return fmt.Errorf("%s: requests reached %v, want exactly %v", name, spread, want)
		}
		return nil
	})
	t.Logf("%-44s followed in %v", name, time.Since(start).Round(time.Millisecond))
}

// expectDumpError polls until the error of the one source of the kind
// source in the admin dump contains every part.
func expectDumpError(t *testing.T, source string, timeout time.Duration, parts ...string) {
	t.Helper()
	harness.Eventually(t, timeout, func() error {
		var msg string
		for _, e := range upstreams.Dump() {
			if e.Source == source {
				msg = e.Error
			}
		}
		for _, p := range parts {
			if !strings.Contains(msg, p) {
				return fmt.Errorf("the dump's error %q does not contain %q", msg, p)
			}
		}
		return nil
	})
}

// TestEtcdRegistrarProcess is not a test: run by TestEtcdFollowsRegistrars
// as a separate process (the test binary again), it registers one instance
// through etcd's endpoints manager with a lease it keeps alive, as a gRPC
// server using etcd naming does, until it is killed.
func TestEtcdRegistrarProcess(t *testing.T) {
	target, addr := os.Getenv("ETCD_REGISTRAR_TARGET"), os.Getenv("ETCD_REGISTRAR_ADDR")
	if target == "" {
		t.Skip("run by TestEtcdFollowsRegistrars")
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{os.Getenv("ETCD_REGISTRAR_ENDPOINT")}, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	lease, err := cli.Grant(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	em, err := etcdnaming.NewManager(cli, target)
	if err != nil {
		t.Fatal(err)
	}
	if err := em.AddEndpoint(ctx, target+"/"+addr, etcdnaming.Endpoint{Addr: addr}, clientv3.WithLease(lease.ID)); err != nil {
		t.Fatal(err)
	}
	alive, err := cli.KeepAlive(ctx, lease.ID)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Println("registered")
	for range alive {
	}
}

// TestEtcdFollowsRegistrars: instances registered through etcd's own
// endpoints manager (the naming library gRPC's etcd resolver reads) reach
// Caddy through the watch: an added endpoint, a deleted one, and a
// registrar killed with -9, whose lease expires (TTL 2 s) and takes its key
// with it. Caddy reads the prefix once and never again (no reconcile to
// hide a missed event): the watch restarts metric stays 0.
func TestEtcdFollowsRegistrars(t *testing.T) {
	e := startEtcd(t)
	n := harness.NewNetns(t)
	a, b, c := n.AddAddr(t), n.AddAddr(t), n.AddAddr(t)
	n.Backend(t, "a", a, 8080)
	n.Backend(t, "b", b, 8080)
	n.Backend(t, "c", c, 8080)
	dial := func(ip netip.Addr) string { return netip.AddrPortFrom(ip, 8080).String() }
	const target = "shop/web"
	em, err := etcdnaming.NewManager(e.cli, target)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	lease, err := e.cli.Grant(ctx, 10)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.cli.KeepAlive(ctx, lease.ID); err != nil {
		t.Fatal(err)
	}
	add := func(ip netip.Addr, md map[string]any) {
		if err := em.AddEndpoint(ctx, target+"/"+dial(ip), etcdnaming.Endpoint{Addr: dial(ip), Metadata: md}, clientv3.WithLease(lease.ID)); err != nil {
			t.Fatal(err)
		}
	}
	add(a, map[string]any{"zone": "east", "weight": 3})

	cd := harness.StartCaddy(t, etcdCaddyPort, etcdProxy(map[string]any{"service": target}), etcdApp(e.addr))
	expectDump(t, cd, "etcd", 10*time.Second, "first read", map[string]float64{dial(a): 3}, "a")
	conn := "default"
	restarts := discoveryMetric(t, "caddy_discovery_watch_restarts_total", "connection", conn)

	const within = time.Second
	add(b, nil)
	expectDump(t, cd, "etcd", within, "endpoints manager adds b", map[string]float64{dial(a): 3, dial(b): 1}, "a", "b")

	registrar := exec.Command(os.Args[0], "-test.run=^TestEtcdRegistrarProcess$", "-test.v")
	registrar.Env = append(os.Environ(), "ETCD_REGISTRAR_TARGET="+target, "ETCD_REGISTRAR_ADDR="+dial(c),
		"ETCD_REGISTRAR_ENDPOINT=http://"+e.addr)
	out := new(strings.Builder)
	registrar.Stdout, registrar.Stderr = out, out
	if err := registrar.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = registrar.Process.Kill(); _ = registrar.Wait() })
	expectDump(t, cd, "etcd", 10*time.Second, "registrar process adds c", map[string]float64{dial(a): 3, dial(b): 1, dial(c): 1}, "a", "b", "c")
	_ = registrar.Process.Signal(syscall.SIGKILL)
	killed := time.Now()
	expectDump(t, cd, "etcd", 10*time.Second, "registrar killed: its lease expires", map[string]float64{dial(a): 3, dial(b): 1}, "a", "b")
	if d := time.Since(killed); d > 4*time.Second {
		t.Errorf("the killed registrar's instance went after %v; its lease TTL is 2 s", d)
	}

	if err := em.DeleteEndpoint(ctx, target+"/"+dial(a)); err != nil {
		t.Fatal(err)
	}
	expectDump(t, cd, "etcd", within, "endpoints manager deletes a", map[string]float64{dial(b): 1}, "b")
	if err := em.DeleteEndpoint(ctx, target+"/"+dial(b)); err != nil {
		t.Fatal(err)
	}
	expectDumpError(t, "etcd", within, `no keys under "shop/web/"`)
	add(a, map[string]any{"zone": "east"})
	expectDump(t, cd, "etcd", within, "a back", map[string]float64{dial(a): 1}, "a")

	if got := discoveryMetric(t, "caddy_discovery_watch_restarts_total", "connection", conn); got != restarts {
		t.Errorf("the watch restarted %v times without an error", got-restarts)
	}
	if got := discoveryMetric(t, "caddy_discovery_connected", "connection", conn); got != 1 {
		t.Errorf("caddy_discovery_connected = %v, want 1", got)
	}
}

// TestEtcdFormats: each format reads what its registrar writes, selecting by
// metadata and keeping weights: go-kratos's etcd registry (the layout of
// contrib/registry/etcd/registry.go: key /microservices/<name>/<id>, value
// the JSON ServiceInstance; the module proxy refuses the module, so the
// test writes it), and a JSON layout with named fields.
func TestEtcdFormats(t *testing.T) {
	e := startEtcd(t)
	n := harness.NewNetns(t)
	a, b := n.AddAddr(t), n.AddAddr(t)
	n.Backend(t, "a", a, 8000)
	n.Backend(t, "b", b, 8000)
	dial := func(ip netip.Addr) string { return netip.AddrPortFrom(ip, 8000).String() }
	kratos := func(id string, ip netip.Addr, version string, weight string) string {
		b, _ := json.Marshal(map[string]any{"id": id, "name": "shop", "version": version,
			"metadata": map[string]string{"weight": weight}, "endpoints": []string{"grpc://" + ip.String() + ":9000", "http://" + dial(ip) + "?isSecure=false"}})
		return string(b)
	}
	e.put(t, "/microservices/shop/1", kratos("1", a, "v1", "1"), 0)
	e.put(t, "/microservices/shop/2", kratos("2", b, "v2", "4"), 0)

	cd := harness.StartCaddy(t, etcdCaddyPort, etcdProxy(map[string]any{"service": "shop", "format": "kratos"}), etcdApp(e.addr))
	expectDump(t, cd, "etcd", 10*time.Second, "kratos", map[string]float64{dial(a): 1, dial(b): 4}, "a", "b")
	cd.Load(etcdProxy(map[string]any{"service": "shop", "format": "kratos", "metadata": map[string]string{"version": "v2"}}), etcdApp(e.addr))
	expectDump(t, cd, "etcd", 10*time.Second, "kratos version v2", map[string]float64{dial(b): 4}, "b")

	e.put(t, "apps/cart/a", fmt.Sprintf(`{"host":%q,"p":8000,"w":2}`, a), 0)
	e.put(t, "apps/cart/b", fmt.Sprintf(`{"host":"%s:8000"}`, b), 0)
	cd.Load(etcdProxy(map[string]any{"service": "cart", "format": "json", "prefix": "apps/cart/",
		"fields": map[string]string{"address": "host", "port": "p", "weight": "w"}}), etcdApp(e.addr))
	expectDump(t, cd, "etcd", 10*time.Second, "json with named fields", map[string]float64{dial(a): 2, dial(b): 1}, "a", "b")
	e.put(t, "apps/cart/b", "not json", 0)
	expectDump(t, cd, "etcd", time.Second, "json: a key not in the format", map[string]float64{dial(a): 2}, "a")
	if _, err := e.cli.Delete(context.Background(), "apps/cart/a"); err != nil {
		t.Fatal(err)
	}
	expectDumpError(t, "etcd", time.Second, `none of the 1 keys under "apps/cart/" is a usable json instance`, `key "apps/cart/b": not a JSON object`)

	// go-micro's etcd registry (the module proxy serves neither go-micro.dev
	// nor its plugins): the layout of its registry/etcd, one key per node,
	// /micro/registry/<service>/<node id>, holding the Service with that node.
	micro := func(id string, ip netip.Addr, zone string) string {
		b, _ := json.Marshal(map[string]any{"name": "greeter", "version": "latest", "metadata": map[string]string{"team": "shop"},
			"endpoints": []any{}, "nodes": []map[string]any{{"id": id, "address": dial(ip), "metadata": map[string]string{"zone": zone, "protocol": "http"}}}})
		return string(b)
	}
	e.put(t, "/micro/registry/greeter/greeter-a", micro("greeter-a", a, "east"), 0)
	e.put(t, "/micro/registry/greeter/greeter-b", micro("greeter-b", b, "west"), 0)
	cd.Load(etcdProxy(map[string]any{"service": "greeter", "format": "go-micro", "metadata": map[string]string{"zone": "west", "team": "shop"}}), etcdApp(e.addr))
	expectDump(t, cd, "etcd", 10*time.Second, "go-micro, metadata zone=west", map[string]float64{dial(b): 1}, "b")
}

// TestEtcdOutages: Caddy keeps serving the last known instances while etcd
// cannot be reached, says so, and catches up when it is back: a connection
// cut while the instances change and the store is compacted (the watch
// cannot resume at its revision, so the source reads the prefix again), and
// a hung etcd (SIGSTOP) noticed within 8 s (the probe: every 5 s, 3 s to
// answer).
func TestEtcdOutages(t *testing.T) {
	e := startEtcd(t)
	f := harness.NewForwarder(t, e.addr)
	n := harness.NewNetns(t)
	a, b, c := n.AddAddr(t), n.AddAddr(t), n.AddAddr(t)
	n.Backend(t, "a", a, 8080)
	n.Backend(t, "b", b, 8080)
	n.Backend(t, "c", c, 8080)
	dial := func(ip netip.Addr) string { return netip.AddrPortFrom(ip, 8080).String() }
	value := func(ip netip.Addr) string { return fmt.Sprintf(`{"Op":0,"Addr":%q}`, dial(ip)) }
	e.put(t, "svc/a", value(a), 0)
	e.put(t, "svc/b", value(b), 0)
	cd := harness.StartCaddy(t, etcdCaddyPort, etcdProxy(map[string]any{"service": "svc"}),
		etcdApp(fmt.Sprintf("127.0.0.1:%d", f.Port())))
	expectDump(t, cd, "etcd", 10*time.Second, "first read", map[string]float64{dial(a): 1, dial(b): 1}, "a", "b")
	conn := "default"
	restarts := discoveryMetric(t, "caddy_discovery_watch_restarts_total", "connection", conn)

	// cut: changes and a compaction Caddy cannot see
	f.SetOpen(false)
	f.Cut()
	if _, err := e.cli.Delete(context.Background(), "svc/b"); err != nil {
		t.Fatal(err)
	}
	e.put(t, "svc/c", value(c), 0)
	resp, err := e.cli.Get(context.Background(), "svc/", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.cli.Compact(context.Background(), resp.Header.Revision); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	expectDumpError(t, "etcd", 12*time.Second, `cannot reach etcd server "default"`, "serving the last known instances meanwhile")
	t.Logf("connection cut: reported after %v", time.Since(start).Round(time.Millisecond))
	if spread := cd.Spread(12); !slices.Equal(harness.Names(spread), []string{"a", "b"}) {
		t.Errorf("during the cut, requests reached %v, want the last known a and b", spread)
	}
	f.SetOpen(true)
	expectDump(t, cd, "etcd", 15*time.Second, "back after the cut and a compaction", map[string]float64{dial(a): 1, dial(c): 1}, "a", "c")
	harness.Eventually(t, 5*time.Second, func() error {
		if got := discoveryMetric(t, "caddy_discovery_watch_restarts_total", "connection", conn); got != restarts+1 {
			return fmt.Errorf("watch restarts %v, want %v (one read after the compaction)", got, restarts+1)
		}
		return nil
	})

	// hung: the process stops answering, its connections stay open
	e.Signal(syscall.SIGSTOP)
	stopped := time.Now()
	expectDumpError(t, "etcd", 12*time.Second, `cannot reach etcd server "default"`)
	t.Logf("hung etcd: reported after %v", time.Since(stopped).Round(time.Millisecond))
	if spread := cd.Spread(12); !slices.Equal(harness.Names(spread), []string{"a", "c"}) {
		t.Errorf("while etcd hangs, requests reached %v, want the last known a and c", spread)
	}
	e.Signal(syscall.SIGCONT)
	harness.Eventually(t, 15*time.Second, func() error {
		for _, d := range upstreams.Dump() {
			if d.Source == "etcd" && d.Error != "" {
				return fmt.Errorf("still: %s", d.Error)
			}
		}
		return nil
	})
	e.put(t, "svc/b", value(b), 0)
	expectDump(t, cd, "etcd", 2*time.Second, "a change after the hang", map[string]float64{dial(a): 1, dial(b): 1, dial(c): 1}, "a", "b", "c")
}

// TestEtcdRestarted: etcd crashes (SIGKILL) under a request loop and
// starts again on its data 3 s later: no request fails (the last known
// instances serve throughout), and a registration made once it is back is
// served through the watch, whose time from recovery is reported on a
// "fault:" line.
func TestEtcdRestarted(t *testing.T) {
	e := startEtcd(t)
	n := harness.NewNetns(t)
	a, b, c := n.AddAddr(t), n.AddAddr(t), n.AddAddr(t)
	for name, ip := range map[string]netip.Addr{"a": a, "b": b, "c": c} {
		n.Backend(t, name, ip, 8080)
	}
	dial := func(ip netip.Addr) string { return netip.AddrPortFrom(ip, 8080).String() }
	value := func(ip netip.Addr) string { return fmt.Sprintf(`{"Op":0,"Addr":%q}`, dial(ip)) }
	e.put(t, "svc/a", value(a), 0)
	e.put(t, "svc/b", value(b), 0)
	cd := harness.StartCaddy(t, etcdCaddyPort, etcdProxy(map[string]any{"service": "svc"}), etcdApp(e.addr))
	expectDump(t, cd, "etcd", 10*time.Second, "first read", map[string]float64{dial(a): 1, dial(b): 1}, "a", "b")
	tr := startTraffic(t, cd, []string{"a", "b", "c"}, "")
	time.Sleep(time.Second)

	e.Stop(syscall.SIGKILL)
	stopped := time.Now()
	expectDumpError(t, "etcd", 12*time.Second, `cannot reach etcd server "default"`, "serving the last known instances meanwhile")
	time.Sleep(time.Until(stopped.Add(3 * time.Second))) // traffic while etcd is down
	e.Restart()
	harness.Eventually(t, 30*time.Second, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_, err := e.cli.Get(ctx, "svc/a")
		return err
	})
	back := time.Now()
	e.put(t, "svc/c", value(c), 0)
	served, ok := tr.firstSeen("", "c", back, faultServeWait)
	checkRecovery(t, "etcd restarted", back, served, ok)
	checkTraffic(t, tr, "etcd restarted")
	expectDump(t, cd, "etcd", 2*time.Second, "after the restart", map[string]float64{dial(a): 1, dial(b): 1, dial(c): 1}, "a", "b", "c")
}

// TestEtcdAuth: with authentication on, a user with read permission on
// the prefix is served; a wrong password and a user without permission are
// explained with what to fix; the password appears nowhere Caddy shows.
func TestEtcdAuth(t *testing.T) {
	const password, readerPassword = "etcd-root-s3cret", "etcd-reader-s3cret"
	e := startEtcd(t)
	ctx := context.Background()
	for _, step := range []func() error{
		func() error { _, err := e.cli.UserAdd(ctx, "root", password); return err },
		func() error { _, err := e.cli.UserGrantRole(ctx, "root", "root"); return err },
		func() error { _, err := e.cli.RoleAdd(ctx, "shop-reader"); return err },
		func() error {
			_, err := e.cli.RoleGrantPermission(ctx, "shop-reader", "shop/", clientv3.GetPrefixRangeEnd("shop/"), clientv3.PermissionType(clientv3.PermRead))
			return err
		},
		func() error { _, err := e.cli.UserAdd(ctx, "caddy", readerPassword); return err },
		func() error { _, err := e.cli.UserGrantRole(ctx, "caddy", "shop-reader"); return err },
		func() error { _, err := e.cli.AuthEnable(ctx); return err },
	} {
		if err := step(); err != nil {
			t.Fatal(err)
		}
	}
	root, err := clientv3.New(clientv3.Config{Endpoints: []string{"http://" + e.addr}, Username: "root", Password: password, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	n := harness.NewNetns(t)
	a := n.AddAddr(t)
	n.Backend(t, "a", a, 8080)
	dialA := netip.AddrPortFrom(a, 8080).String()
	if _, err := root.Put(ctx, "shop/a", fmt.Sprintf(`{"Op":0,"Addr":%q}`, dialA)); err != nil {
		t.Fatal(err)
	}
	app := func(user, pw string) string {
		return fmt.Sprintf(`"etcd": {"servers": {"default": {"endpoints": [%q], "username": %q, "password": %q}}}`, e.addr, user, pw)
	}
	logFile := filepath.Join(t.TempDir(), "caddy.log")
	cd := harness.StartCaddyLogged(t, etcdCaddyPort, etcdProxy(map[string]any{"service": "shop"}), app("caddy", readerPassword), logFile)
	expectDump(t, cd, "etcd", 10*time.Second, "reader", map[string]float64{dialA: 1}, "a")

	cd.Load(etcdProxy(map[string]any{"service": "other"}), app("caddy", readerPassword))
	expectDumpError(t, "etcd", 10*time.Second, `user "caddy" may not read the keys under "other/" (permission denied)`, "etcdctl role grant-permission")
	cd.Load(etcdProxy(map[string]any{"service": "shop"}), app("caddy", "wrong-"+readerPassword))
	expectDumpError(t, "etcd", 15*time.Second, "the user name or password is wrong", "check username and password")

	seen, _ := json.Marshal(upstreams.Dump())
	logged, err := os.ReadFile(logFile)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(logged), "the user name or password is wrong") {
		t.Fatalf("the log has no line about the wrong password:\n%s", logged)
	}
	for _, secret := range []string{password, readerPassword} {
		for where, text := range map[string]string{"admin dump": string(seen), "log": string(logged)} {
			if strings.Contains(text, secret) {
				t.Errorf("the %s shows a password", where)
			}
		}
	}
}

// etcdWatchers reads etcd's own count of open watchers (its /metrics).
func etcdWatchers(t *testing.T, e *etcdServer) int {
	t.Helper()
	resp, err := http.Get("http://" + e.addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(line, "etcd_debugging_mvcc_watcher_total "); ok {
			n, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				t.Fatal(err)
			}
			return int(n)
		}
	}
	t.Fatal("etcd's /metrics has no etcd_debugging_mvcc_watcher_total")
	return 0
}

// TestEtcdReloadsKeepOneWatch: 20 reloads, alternating two configs whose
// sites read the same prefix with other selections, keep one connection
// to etcd (counted by a forwarder) and one watch (counted by etcd); the
// sites serve right after each reload, and changes are followed after
// them. caddy.Stop leaves no watch behind.
func TestEtcdReloadsKeepOneWatch(t *testing.T) {
	e := startEtcd(t)
	f := harness.NewForwarder(t, e.addr)
	n := harness.NewNetns(t)
	a, b := n.AddAddr(t), n.AddAddr(t)
	n.Backend(t, "a", a, 8080)
	n.Backend(t, "b", b, 8080)
	dial := func(ip netip.Addr) string { return netip.AddrPortFrom(ip, 8080).String() }
	e.put(t, "svc/a", fmt.Sprintf(`{"Op":0,"Addr":%q,"Metadata":{"zone":"east"}}`, dial(a)), 0)
	app := etcdApp(fmt.Sprintf("127.0.0.1:%d", f.Port()))
	configs := []string{
		etcdProxy(map[string]any{"service": "svc"}),
		etcdProxy(map[string]any{"service": "svc", "metadata": map[string]string{"zone": "east"}}),
	}
	cd := harness.StartCaddy(t, etcdCaddyPort, configs[0], app)
	expectDump(t, cd, "etcd", 10*time.Second, "first read", map[string]float64{dial(a): 1}, "a")
	for i := range 20 {
		cd.Load(configs[(i+1)%2], app)
		if spread := cd.Spread(3); !slices.Equal(harness.Names(spread), []string{"a"}) {
			t.Fatalf("reload %d: requests reached %v", i+1, spread)
		}
	}
	if got := f.Accepted(); got != 1 {
		t.Errorf("%d connections to etcd over 20 reloads, want 1", got)
	}
	// (the watch starts watchSettle, 100 ms, after its first read)
	harness.Eventually(t, 2*time.Second, func() error {
		if got := etcdWatchers(t, e); got != 1 {
			return fmt.Errorf("etcd has %d watchers after 20 reloads, want 1", got)
		}
		return nil
	})
	time.Sleep(500 * time.Millisecond)
	if got := etcdWatchers(t, e); got != 1 {
		t.Errorf("etcd has %d watchers after 20 reloads, want 1", got)
	}
	e.put(t, "svc/b", fmt.Sprintf(`{"Op":0,"Addr":%q,"Metadata":{"zone":"east"}}`, dial(b)), 0)
	expectDump(t, cd, "etcd", time.Second, "a change after the reloads", map[string]float64{dial(a): 1, dial(b): 1}, "a", "b")
	cd.Stop()
	harness.Eventually(t, 5*time.Second, func() error {
		if got := etcdWatchers(t, e); got != 0 {
			return fmt.Errorf("etcd has %d watchers after caddy.Stop", got)
		}
		return nil
	})
}

var (
	goZeroOnce sync.Once
	goZeroBin  string
	goZeroErr  error
)

// goZeroRegistrar builds integration/gozero-registrar (go-zero's discov
// publisher, in a module of its own) once per test run.
func goZeroRegistrar(t *testing.T) string {
	t.Helper()
	goZeroOnce.Do(func() {
		dir, err := os.MkdirTemp("", "caddy-discovery-gozero-")
		if err != nil {
			goZeroErr = err
			return
		}
		atExit(func() { _ = os.RemoveAll(dir) })
		goZeroBin = filepath.Join(dir, "gozero-registrar")
		cmd := exec.Command("go", "build", "-o", goZeroBin, ".")
		cmd.Dir = "gozero-registrar"
		cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=readonly")
		if out, err := cmd.CombinedOutput(); err != nil {
			goZeroErr = fmt.Errorf("go build ./integration/gozero-registrar: %v\n%s", err, out)
		}
	})
	if goZeroErr != nil {
		t.Fatal(goZeroErr)
	}
	return goZeroBin
}

// TestEtcdGoZero: a go-zero service's registration, written by go-zero's
// own discov publisher (key <key>/<lease ID>, the address as plain text),
// reaches Caddy through the watch; killing the service (-9) lets its lease
// expire, and its instance goes.
func TestEtcdGoZero(t *testing.T) {
	bin := goZeroRegistrar(t)
	e := startEtcd(t)
	n := harness.NewNetns(t)
	a, b := n.AddAddr(t), n.AddAddr(t)
	n.Backend(t, "a", a, 8080)
	n.Backend(t, "b", b, 8080)
	dial := func(ip netip.Addr) string { return netip.AddrPortFrom(ip, 8080).String() }
	register := func(ip netip.Addr) *exec.Cmd {
		cmd := exec.Command(bin, "-etcd", e.addr, "-key", "user.rpc", "-value", dial(ip), "-ttl", "2")
		lines := startWithLines(t, cmd)
		expectLine(t, lines, "registered", 10*time.Second)
		return cmd
	}
	register(a)
	cd := harness.StartCaddy(t, etcdCaddyPort, etcdProxy(map[string]any{"service": "user.rpc", "format": "go-zero"}), etcdApp(e.addr))
	expectDump(t, cd, "etcd", 10*time.Second, "go-zero: first read", map[string]float64{dial(a): 1}, "a")
	bcmd := register(b)
	expectDump(t, cd, "etcd", time.Second, "go-zero: b registers", map[string]float64{dial(a): 1, dial(b): 1}, "a", "b")
	_ = bcmd.Process.Signal(syscall.SIGKILL)
	killed := time.Now()
	expectDump(t, cd, "etcd", 10*time.Second, "go-zero: b killed, its lease expires", map[string]float64{dial(a): 1}, "a")
	if d := time.Since(killed); d > 4*time.Second {
		t.Errorf("the killed service's instance went after %v; its lease TTL is 2 s", d)
	}
}

// testPKI is a CA with a server certificate for 127.0.0.1 and a client
// certificate, as PEM files in dir.
type testPKI struct {
	ca, serverCert, serverKey, clientCert, clientKey string
	// serverPEM holds the server's PKCS #8 key and certificate, as Java's
	// PEM key stores read them.
	serverPEM string
	clientTLS *tls.Config // for the test's own client
}

func newTestPKI(t *testing.T, dir string) testPKI {
	t.Helper()
	key := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	write := func(name, typ string, der []byte) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	caKey := key()
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "caddy-discovery etcd test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	var serverPEM []byte
	issue := func(name string, serial int64, usage x509.ExtKeyUsage) (string, string, tls.Certificate) {
		k := key()
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: name},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
			IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &k.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		kder, err := x509.MarshalECPrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		if usage == x509.ExtKeyUsageServerAuth {
			pkcs8, err := x509.MarshalPKCS8PrivateKey(k)
			if err != nil {
				t.Fatal(err)
			}
			serverPEM = append(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8}), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
		}
		return write(name+".pem", "CERTIFICATE", der), write(name+"-key.pem", "EC PRIVATE KEY", kder),
			tls.Certificate{Certificate: [][]byte{der}, PrivateKey: k}
	}
	p := testPKI{ca: write("ca.pem", "CERTIFICATE", caDER)}
	p.serverCert, p.serverKey, _ = issue("server", 2, x509.ExtKeyUsageServerAuth)
	p.serverPEM = filepath.Join(dir, "server-bundle.pem")
	if err := os.WriteFile(p.serverPEM, serverPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	var cert tls.Certificate
	p.clientCert, p.clientKey, cert = issue("client", 3, x509.ExtKeyUsageClientAuth)
	roots := x509.NewCertPool()
	roots.AddCert(caCert)
	p.clientTLS = &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	return p
}

// TestEtcdSeveralEndpoints: with several endpoints, one of which refuses
// connections (a member that is down), Caddy reads and watches through the
// one that works, whichever comes first in the list.
func TestEtcdSeveralEndpoints(t *testing.T) {
	e := startEtcd(t)
	d := harness.NewNetns(t).Backends(t, 8080, "a", "b")
	da, db := d[0], d[1]
	e.put(t, "svc/a", fmt.Sprintf(`{"Op":0,"Addr":%q}`, da), 0)
	down := freeAddr(t) // nothing listens there
	app := fmt.Sprintf(`"etcd": {"servers": {"default": {"endpoints": [%q, %q]}}}`, down, e.addr)
	cd := harness.StartCaddy(t, etcdCaddyPort, etcdProxy(map[string]any{"service": "svc"}), app)
	expectDump(t, cd, "etcd", 10*time.Second, "first read, one member down", map[string]float64{da.String(): 1}, "a")
	e.put(t, "svc/b", fmt.Sprintf(`{"Op":0,"Addr":%q}`, db), 0)
	expectDump(t, cd, "etcd", 2*time.Second, "watched through the member that works", map[string]float64{da.String(): 1, db.String(): 1}, "a", "b")
}

// TestEtcdTLS: etcd's usual production setup, TLS with client certificates
// (--client-cert-auth): Caddy verifies the members against ca_file and
// presents cert_file; without the CA or without a client certificate it
// says which field to set.
func TestEtcdTLS(t *testing.T) {
	pki := newTestPKI(t, t.TempDir())
	e := startEtcdWith(t, []string{"--cert-file", pki.serverCert, "--key-file", pki.serverKey,
		"--client-cert-auth", "--trusted-ca-file", pki.ca}, pki.clientTLS)
	n := harness.NewNetns(t)
	a := n.AddAddr(t)
	n.Backend(t, "a", a, 8080)
	dialA := netip.AddrPortFrom(a, 8080).String()
	e.put(t, "secure/a", fmt.Sprintf(`{"Op":0,"Addr":%q}`, dialA), 0)
	app := func(fields string) string {
		return fmt.Sprintf(`"etcd": {"servers": {"default": {"endpoints": ["https://%s"]%s}}}`, e.addr, fields)
	}
	full := fmt.Sprintf(`, "ca_file": %q, "cert_file": %q, "key_file": %q`, pki.ca, pki.clientCert, pki.clientKey)
	cd := harness.StartCaddy(t, etcdCaddyPort, etcdProxy(map[string]any{"service": "secure"}), app(full))
	expectDump(t, cd, "etcd", 10*time.Second, "TLS with a client certificate", map[string]float64{dialA: 1}, "a")

	cd.Load(etcdProxy(map[string]any{"service": "secure"}), app(fmt.Sprintf(`, "cert_file": %q, "key_file": %q`, pki.clientCert, pki.clientKey)))
	expectDumpError(t, "etcd", 15*time.Second, "not signed by a CA Caddy trusts", "set ca_file")
	cd.Load(etcdProxy(map[string]any{"service": "secure"}), app(fmt.Sprintf(`, "ca_file": %q`, pki.ca)))
	expectDumpError(t, "etcd", 15*time.Second, "client certificate", "set cert_file and key_file")
}

// TestEtcdPropagation measures, over 20 changes (PROPAGATION_CHANGES), the
// time from a write's return to the change being visible in requests, and
// Caddy's own share of it (caddy_discovery_etcd_publish_seconds: watch
// event received -> snapshot published), which must stay within 5 ms.
func TestEtcdPropagation(t *testing.T) {
	e := startEtcd(t)
	n := harness.NewNetns(t)
	a, b := n.AddAddr(t), n.AddAddr(t)
	n.Backend(t, "a", a, 8080)
	n.Backend(t, "b", b, 8080)
	value := func(ip netip.Addr) string { return fmt.Sprintf(`{"Op":0,"Addr":%q}`, netip.AddrPortFrom(ip, 8080)) }
	e.put(t, "prop/a", value(a), 0)
	cd := harness.StartCaddy(t, etcdCaddyPort, etcdProxy(map[string]any{"service": "prop"}), etcdApp(e.addr))
	cd.ExpectBackends(t, 10*time.Second, "a")
	before := publishShareOf(t, "caddy_discovery_etcd_publish_seconds", "connection", "default")
	took := followChanges(t, cd, propagationChanges(t, 20), "b", func(i int) bool {
		if i%2 == 0 {
			e.put(t, "prop/b", value(b), 0)
			return true
		}
		if _, err := e.cli.Delete(context.Background(), "prop/b"); err != nil {
			t.Fatal(err)
		}
		return false
	})
	reportShare(t, "etcd", took, before, "connection", "default")
}

// TestEtcdWeighted: with lb_policy registry_weighted, instances whose etcd
// naming Metadata weighs them 1:4 receive 20/80 % of the requests, and a
// weight written to etcd moves the shares live.
func TestEtcdWeighted(t *testing.T) {
	e := startEtcd(t)
	n := harness.NewNetns(t)
	a, b := n.AddAddr(t), n.AddAddr(t)
	n.Backend(t, "a", a, 8080)
	n.Backend(t, "b", b, 8080)
	put := func(name string, ip netip.Addr, weight int) {
		e.put(t, "weighted/"+name, fmt.Sprintf(`{"Op":0,"Addr":%q,"Metadata":{"weight":%d}}`, netip.AddrPortFrom(ip, 8080), weight), 0)
	}
	put("a", a, 1)
	put("b", b, 4)
	h, _ := json.Marshal(map[string]any{
		"handler":           "reverse_proxy",
		"dynamic_upstreams": map[string]any{"source": "etcd", "service": "weighted"},
		"load_balancing":    map[string]any{"selection_policy": map[string]any{"policy": "registry_weighted"}},
	})
	cd := harness.StartCaddy(t, etcdCaddyPort, string(h), etcdApp(e.addr))
	cd.ExpectBackends(t, 10*time.Second, "a", "b")
	if err := shares(cd.Spread(100), map[string]float64{"a": 20, "b": 80}, 3); err != nil {
		t.Fatal(err)
	}
	put("a", a, 3)
	put("b", b, 1)
	harness.Eventually(t, 5*time.Second, func() error { return shares(cd.Spread(100), map[string]float64{"a": 75, "b": 25}, 3) })
}

// startWithLines starts cmd, killed when the test ends, and returns the
// lines it prints on stdout.
func startWithLines(t *testing.T, cmd *exec.Cmd) <-chan string {
	t.Helper()
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	lines := make(chan string, 16)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	return lines
}

// expectLine waits for the next line to be want.
func expectLine(t *testing.T, lines <-chan string, want string, timeout time.Duration) {
	t.Helper()
	select {
	case line, ok := <-lines:
		if !ok || line != want {
			t.Fatalf("the process said %q (still running: %v), want %q", line, ok, want)
		}
	case <-time.After(timeout):
		t.Fatalf("the process did not say %q within %v", want, timeout)
	}
}
