//go:build integration

package integration

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/nacos-group/nacos-sdk-go/v2/clients"
	"github.com/nacos-group/nacos-sdk-go/v2/clients/naming_client"
	"github.com/nacos-group/nacos-sdk-go/v2/common/constant"
	"github.com/nacos-group/nacos-sdk-go/v2/vo"

	"github.com/caddy-discovery/caddy-discovery/integration/harness"
)

// nacosCaddyPort is where Caddy listens in the Nacos tests; apart from the
// Kubernetes tests' port, as Caddy listens with SO_REUSEPORT and two test
// binaries on one port would share its connections.
const nacosCaddyPort = 18090

// polaris is a running Polaris server speaking the Nacos protocol.
type polaris struct {
	dir  string
	port int // Nacos HTTP port; gRPC is port+1000
}

func startPolaris(t testing.TB, dir string, port int) *polaris {
	t.Helper()
	p := &polaris{dir: dir, port: port}
	p.start(t)
	return p
}

func (p *polaris) script(t testing.TB, name string, env ...string) {
	t.Helper()
	if err := polarisScript(name, p.dir, p.port, env...); err != nil {
		t.Fatal(err)
	}
}

// polarisScript runs start-polaris.sh or stop-polaris.sh for the server in
// dir whose Nacos HTTP port is port, with env added to the environment.
func polarisScript(name, dir string, port int, env ...string) error {
	if name == "start-polaris.sh" {
		ports := []int{port, port + 1000, port + 2000}
		for _, e := range env {
			if v, ok := strings.CutPrefix(e, "EUREKA_PORT="); ok {
				n, _ := strconv.Atoi(v)
				ports = append(ports, n)
			}
		}
		if err := harness.CheckPorts(ports...); err != nil {
			return err
		}
	}
	cmd := exec.Command("./"+name, dir)
	cmd.Env = append(os.Environ(), append(env, fmt.Sprintf("NACOS_HTTP_PORT=%d", port))...)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%s %s: %v\n%s", name, dir, err, out)
	}
	return nil
}

func (p *polaris) start(t testing.TB) { t.Helper(); p.script(t, "start-polaris.sh") }
func (p *polaris) kill(t testing.TB) {
	t.Helper()
	p.script(t, "stop-polaris.sh", "POLARIS_STOP_SIGNAL=KILL")
}
func (p *polaris) stop(t testing.TB) { t.Helper(); p.script(t, "stop-polaris.sh") }

var (
	polarisOnce sync.Once
	sharedPol   *polaris
	polarisErr  error
)

// sharedPolaris is the server most Nacos tests share, started on first use
// and stopped after all tests.
func sharedPolaris(t testing.TB) *polaris {
	t.Helper()
	polarisOnce.Do(func() {
		dir, err := os.MkdirTemp("", "caddy-discovery-polaris-")
		if err != nil {
			polarisErr = err
			return
		}
		p := &polaris{dir: dir, port: 18848}
		// its Eureka API too, for the eureka source's tests
		if polarisErr = polarisScript("start-polaris.sh", dir, p.port, fmt.Sprintf("EUREKA_PORT=%d", sharedEurekaPort)); polarisErr != nil {
			return
		}
		sharedPol = p
		atExit(func() {
			_ = exec.Command("./stop-polaris.sh", dir).Run()
			_ = os.RemoveAll(dir)
		})
	})
	if polarisErr != nil {
		t.Fatalf("starting polaris: %v", polarisErr)
	}
	return sharedPol
}

// registrar registers instances with a separate SDK client per instance, as
// real services do: each one's ephemeral registration lives with its client
// (and the SDK re-registers it after a server restart).
type registrar struct {
	t         testing.TB
	p         *polaris
	namespace string
	mu        sync.Mutex
	clients   map[string]naming_client.INamingClient
}

func newRegistrar(t testing.TB, p *polaris, namespace string) *registrar {
	r := &registrar{t: t, p: p, namespace: namespace, clients: map[string]naming_client.INamingClient{}}
	t.Cleanup(func() {
		r.mu.Lock()
		defer r.mu.Unlock()
		for _, c := range r.clients {
			c.CloseClient()
		}
	})
	return r
}

func (r *registrar) client(key string) naming_client.INamingClient {
	r.mu.Lock()
	defer r.mu.Unlock()
	if c, ok := r.clients[key]; ok {
		return c
	}
	dir := r.t.TempDir()
	c, err := clients.NewNamingClient(vo.NacosClientParam{
		ClientConfig: &constant.ClientConfig{
			NamespaceId: r.namespace, TimeoutMs: 5000, NotLoadCacheAtStart: true,
			CacheDir: dir, LogDir: dir, LogLevel: "error",
		},
		ServerConfigs: []constant.ServerConfig{{IpAddr: "127.0.0.1", Port: uint64(r.p.port)}},
	})
	if err != nil {
		r.t.Fatalf("registrar client: %v", err)
	}
	time.Sleep(50 * time.Millisecond) // the server rejects the SDK's duplicate first re-send otherwise
	r.clients[key] = c
	return c
}

type instance struct {
	group, service, cluster string
	addr                    netip.Addr
	port                    uint16
	weight                  float64
	enabled, healthy        bool
	metadata                map[string]string
}

func (in instance) key() string {
	return fmt.Sprintf("%s@@%s/%s", in.group, in.service, netip.AddrPortFrom(in.addr, in.port))
}

// put registers or updates the instance.
func (r *registrar) put(in instance) {
	r.t.Helper()
	c := r.client(in.key())
	param := vo.RegisterInstanceParam{
		Ip: in.addr.String(), Port: uint64(in.port), Weight: in.weight, Enable: in.enabled, Healthy: in.healthy,
		Metadata: in.metadata, ClusterName: in.cluster, ServiceName: in.service, GroupName: in.group, Ephemeral: true,
	}
	var err error
	for range 3 { // (false, nil) is the server rejecting a duplicate re-send; the instance is registered
		var ok bool
		if ok, err = c.RegisterInstance(param); ok || err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	r.t.Fatalf("registering %s: %v", in.key(), err)
}

// remove deregisters the instance and closes its client.
func (r *registrar) remove(in instance) {
	r.t.Helper()
	c := r.client(in.key())
	if _, err := c.DeregisterInstance(vo.DeregisterInstanceParam{
		Ip: in.addr.String(), Port: uint64(in.port), Cluster: in.cluster, ServiceName: in.service, GroupName: in.group, Ephemeral: true,
	}); err != nil {
		r.t.Fatalf("deregistering %s: %v", in.key(), err)
	}
}

func up(group, service string, addr netip.Addr, port uint16) instance {
	return instance{group: group, service: service, cluster: "DEFAULT", addr: addr, port: port, weight: 1, enabled: true, healthy: true}
}

// nacosProxy is a round-robin reverse_proxy over a nacos dynamic source.
func nacosProxy(source map[string]any) string {
	source["source"] = "nacos"
	b, _ := json.Marshal(source)
	return fmt.Sprintf(`{"handler": "reverse_proxy", "load_balancing": {"selection_policy": {"policy": "round_robin"}}, "dynamic_upstreams": %s}`, b)
}

func nacosServerApp(port int) string {
	return fmt.Sprintf(`"nacos": {"servers": {"default": {"addresses": ["127.0.0.1:%d"], "reconcile_interval": "5s"}}}`, port)
}

// TestNacosFollowsInstances: requests reach exactly the healthy, enabled
// instances with weight > 0 (IPv4 and IPv6), through register, deregister,
// weight 0, disable and enable.
func TestNacosFollowsInstances(t *testing.T) {
	p := sharedPolaris(t)
	n := harness.NewNetns(t)
	reg := newRegistrar(t, p, "")
	a, b, c := n.AddAddr(t), n.AddAddr(t), n.AddAddr6(t)
	n.Backend(t, "a", a, 8080)
	n.Backend(t, "b", b, 8080)
	n.Backend(t, "c", c, 8080)
	ia, ib, ic := up("DEFAULT_GROUP", "follow", a, 8080), up("DEFAULT_GROUP", "follow", b, 8080), up("DEFAULT_GROUP", "follow", c, 8080)
	reg.put(ia)

	cd := harness.StartCaddy(t, nacosCaddyPort, nacosProxy(map[string]any{"service": "follow"}), nacosServerApp(p.port))
	cd.ExpectBackends(t, 10*time.Second, "a")

	reg.put(ib)
	reg.put(ic)
	cd.ExpectBackends(t, 5*time.Second, "a", "b", "c")

	ib.enabled = false
	reg.put(ib)
	cd.ExpectBackends(t, 5*time.Second, "a", "c")

	ic.weight = 0
	reg.put(ic)
	cd.ExpectBackends(t, 5*time.Second, "a")

	ib.enabled, ic.weight = true, 2
	reg.put(ib)
	reg.put(ic)
	cd.ExpectBackends(t, 5*time.Second, "a", "b", "c")

	reg.remove(ia)
	cd.ExpectBackends(t, 5*time.Second, "b", "c")
	reg.remove(ib)
	reg.remove(ic)
	harness.Eventually(t, 5*time.Second, func() error {
		_, err := cd.Get("")
		if err == nil || !strings.Contains(err.Error(), "502") && !strings.Contains(err.Error(), "503") {
			return fmt.Errorf("with no instances: %v, want an error status", err)
		}
		return nil
	})
}

// TestNacosSelection: namespaces, groups, clusters and metadata select
// exactly their instances.
func TestNacosSelection(t *testing.T) {
	p := sharedPolaris(t)
	n := harness.NewNetns(t)
	pub, other := newRegistrar(t, p, ""), newRegistrar(t, p, "selns")
	var ips []netip.Addr
	for i := range 6 {
		ips = append(ips, n.AddAddr(t))
		n.Backend(t, fmt.Sprintf("i%d", i), ips[i], 8080)
	}
	i0 := up("DEFAULT_GROUP", "sel", ips[0], 8080)
	i1 := up("shop", "sel", ips[1], 8080)
	i2 := up("shop", "sel", ips[2], 8080)
	i2.cluster = "hz"
	i3 := up("shop", "sel", ips[3], 8080)
	i3.metadata = map[string]string{"version": "v2"}
	i4 := up("shop", "sel", ips[4], 8080)
	i4.cluster, i4.metadata = "hz", map[string]string{"version": "v2"}
	i5 := up("DEFAULT_GROUP", "sel", ips[5], 8080)
	for _, in := range []instance{i0, i1, i2, i3, i4} {
		pub.put(in)
	}
	other.put(i5)

	cd := harness.StartCaddy(t, nacosCaddyPort, nacosProxy(map[string]any{"service": "sel"}), nacosServerApp(p.port))
	for _, tc := range []struct {
		source map[string]any
		want   []string
	}{
		{map[string]any{"service": "sel"}, []string{"i0"}},
		{map[string]any{"service": "shop@@sel"}, []string{"i1", "i2", "i3", "i4"}},
		{map[string]any{"service": "sel", "group": "shop", "clusters": []string{"hz"}}, []string{"i2", "i4"}},
		{map[string]any{"service": "/shop/sel", "metadata": map[string]string{"version": "v2"}}, []string{"i3", "i4"}},
		{map[string]any{"service": "shop@@sel", "clusters": []string{"hz"}, "metadata": map[string]string{"version": "v2"}}, []string{"i4"}},
		{map[string]any{"service": "selns/DEFAULT_GROUP/sel"}, []string{"i5"}},
		{map[string]any{"service": "sel", "namespace": "selns"}, []string{"i5"}},
	} {
		cd.Load(nacosProxy(tc.source), nacosServerApp(p.port))
		cd.ExpectBackends(t, 10*time.Second, tc.want...)
	}
}

// grpcConns counts this network namespace's established TCP connections to
// the given remote port (Caddy's and the registrars' gRPC connections).
func grpcConns(t testing.TB, port int) int {
	n := 0
	for _, file := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		f, err := os.Open(file)
		if err != nil {
			continue
		}
		s := bufio.NewScanner(f)
		for s.Scan() {
			fields := strings.Fields(s.Text())
			if len(fields) < 4 || fields[3] != "01" {
				continue
			}
			if strings.HasSuffix(fields[2], fmt.Sprintf(":%04X", port)) {
				n++
			}
		}
		f.Close()
	}
	return n
}

// goroutinesWith counts the goroutines whose stack mentions s.
func goroutinesWith(s string) int {
	buf := make([]byte, 1<<22)
	buf = buf[:runtime.Stack(buf, true)]
	n := 0
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, s) {
			n++
		}
	}
	return n
}

// TestNacosReloadKeepsClient: config reloads keep one naming client (one gRPC
// connection) and the subscription; stopping Caddy closes it and leaves no
// goroutine behind.
func TestNacosReloadKeepsClient(t *testing.T) {
	p := sharedPolaris(t)
	n := harness.NewNetns(t)
	reg := newRegistrar(t, p, "")
	a, b := n.AddAddr(t), n.AddAddr(t)
	n.Backend(t, "a", a, 8080)
	n.Backend(t, "b", b, 8080)
	ia := up("DEFAULT_GROUP", "reload", a, 8080)
	ib := up("DEFAULT_GROUP", "reload", b, 8080)
	reg.put(ia)
	reg.client(ib.key()) // every registrar connection exists before counting

	grpc := p.port + 1000
	time.Sleep(200 * time.Millisecond)
	base := grpcConns(t, grpc)
	sdkBase := goroutinesWith("nacos-sdk-go")

	cd := harness.StartCaddy(t, nacosCaddyPort, nacosProxy(map[string]any{"service": "reload"}), nacosServerApp(p.port))
	cd.ExpectBackends(t, 10*time.Second, "a")
	if got := grpcConns(t, grpc); got != base+1 {
		t.Fatalf("%d gRPC connections with Caddy running, want %d", got, base+1)
	}
	for i := range 5 {
		// the same service in two routes' worth of configs, alternating
		src := map[string]any{"service": "reload"}
		if i%2 == 1 {
			src["service"] = "DEFAULT_GROUP@@reload"
		}
		cd.Load(nacosProxy(src), nacosServerApp(p.port))
		cd.ExpectBackends(t, 5*time.Second, "a")
		if got := grpcConns(t, grpc); got != base+1 {
			t.Fatalf("reload %d: %d gRPC connections, want %d (one shared client)", i, got, base+1)
		}
	}
	// the subscription still follows changes after the reloads
	reg.put(ib)
	cd.ExpectBackends(t, 5*time.Second, "a", "b")

	if err := caddy.Stop(); err != nil {
		t.Fatal(err)
	}
	harness.Eventually(t, 10*time.Second, func() error {
		if got := grpcConns(t, grpc); got != base {
			return fmt.Errorf("%d gRPC connections after stopping Caddy, want %d", got, base)
		}
		if g := goroutinesWith("caddy-discovery/nacos."); g != 0 {
			return fmt.Errorf("%d goroutines of the nacos module left after stopping Caddy", g)
		}
		// the SDK's UDP push receiver outlives CloseClient (an SDK leak, one per client)
		if g := goroutinesWith("nacos-sdk-go"); g > sdkBase+1 {
			return fmt.Errorf("%d SDK goroutines after stopping Caddy, %d before starting it", g, sdkBase)
		}
		return nil
	})
}

// TestNacosServerRestart: the server is killed and restarted mid-traffic;
// no request to an instance that stayed up fails, afterwards changes are
// followed again (the subscription recovered), and a reconnect that ends
// well logs no error: once Caddy logs "connected to nacos server" again,
// nothing follows at error level (the lost connection before it is one).
//
// Caddy's gRPC connection goes through a gate that opens only 2 s after
// Caddy has logged the server back. The server's HTTP API, which the SDK's
// ServerHealthy asks too, answers as soon as the server is up, while the
// SDK's gRPC reconnect waits up to 5 s between attempts; the gate makes
// that window, in which Caddy sees the server back but cannot subscribe
// yet, certain instead of a matter of timing.
func TestNacosServerRestart(t *testing.T) {
	if raceEnabled {
		// The SDK's reconnect writes RpcClient.currentConnection while its
		// event goroutine reads it (rpc_client.go:449 vs :487 in v2.3.5;
		// nacos-sdk-go #741, #905): -race fails any test whose clients
		// reconnect. .ci/run runs this test again without -race.
		t.Skip("nacos-sdk-go v2.3.5 has a known data race on reconnect (#741, #905); run without -race (.ci/run does)")
	}
	dir := t.TempDir()
	p := startPolaris(t, dir, 28848)
	t.Cleanup(func() { p.stop(t) })
	n := harness.NewNetns(t)
	reg := newRegistrar(t, p, "")
	a, b, c := n.AddAddr(t), n.AddAddr(t), n.AddAddr(t)
	n.Backend(t, "a", a, 8080)
	n.Backend(t, "b", b, 8080)
	n.Backend(t, "c", c, 8080)
	reg.put(up("DEFAULT_GROUP", "restart", a, 8080))
	reg.put(up("DEFAULT_GROUP", "restart", b, 8080))

	gate := harness.NewForwarder(t, fmt.Sprintf("127.0.0.1:%d", p.port+1000))
	logFile := filepath.Join(dir, "caddy.log")
	app := fmt.Sprintf(`"nacos": {"servers": {"default": {"addresses": ["127.0.0.1:%d"], "grpc_port": %d, "reconcile_interval": "5s"}}}`,
		p.port, gate.Port())
	cd := harness.StartCaddyLogged(t, nacosCaddyPort, nacosProxy(map[string]any{"service": "restart"}), app, logFile)
	cd.ExpectBackends(t, 10*time.Second, "a", "b")

	tr := startTraffic(t, cd, []string{"a", "b", "c"}, "")

	gate.SetOpen(false)
	p.kill(t)
	time.Sleep(3 * time.Second) // traffic during the outage
	p.start(t)
	harness.Eventually(t, 10*time.Second, func() error {
		_, err := errorsAfterReconnect(harness.ReadFile(logFile))
		return err
	})
	time.Sleep(2 * time.Second) // Caddy sees the server back, its gRPC connection cannot come up
	gate.SetOpen(true)
	// after the restart, the registrars' SDK clients re-register a and b;
	// a change made now must reach Caddy
	time.Sleep(2 * time.Second)
	reg.put(up("DEFAULT_GROUP", "restart", c, 8080))
	cd.ExpectBackends(t, 20*time.Second, "a", "b", "c")
	total, failed, first := tr.outcome()
	t.Logf("%d requests during kill/restart, %d failed", total, failed)
	if failed > 0 {
		t.Fatalf("%d of %d requests failed across the server restart; first: %s", failed, total, first)
	}
	if errs, err := errorsAfterReconnect(harness.ReadFile(logFile)); err != nil {
		t.Fatalf("%v; log:\n%s", err, harness.ReadFile(logFile))
	} else if len(errs) > 0 {
		t.Fatalf("%d error lines after the reconnect, which ended well:\n%s", len(errs), strings.Join(errs, "\n"))
	}
}

// errorsAfterReconnect returns the error-level lines of a Caddy JSON log
// that follow the last "connected to nacos server" line, which must come
// after a "nacos connection problem" line (the reconnect after the loss).
func errorsAfterReconnect(log string) ([]string, error) {
	lines := strings.Split(strings.TrimSpace(log), "\n")
	lost, back := -1, -1
	for i, l := range lines {
		switch {
		case strings.Contains(l, `"msg":"nacos connection problem"`):
			lost = i
		case strings.Contains(l, `"msg":"connected to nacos server"`):
			back = i
		}
	}
	if lost < 0 || back < lost {
		return nil, fmt.Errorf("no %q line after a %q line in Caddy's log", "connected to nacos server", "nacos connection problem")
	}
	var errs []string
	for _, l := range lines[back+1:] {
		if strings.Contains(l, `"level":"error"`) {
			errs = append(errs, l)
		}
	}
	return errs, nil
}

// TestNacosPropagation measures, over 30 changes (PROPAGATION_CHANGES), the
// time from a register or deregister call returning to the change being
// visible in requests, and Caddy's own share (SDK callback to published
// snapshot). It reports the end-to-end figures (the server's 1 s push tick
// dominates them) and fails only if Caddy's own share is missing or its p99
// exceeds 5 ms.
func TestNacosPropagation(t *testing.T) {
	p := sharedPolaris(t)
	n := harness.NewNetns(t)
	reg := newRegistrar(t, p, "")
	a, b := n.AddAddr(t), n.AddAddr(t)
	n.Backend(t, "a", a, 8080)
	n.Backend(t, "b", b, 8080)
	reg.put(up("DEFAULT_GROUP", "prop", a, 8080))
	ib := up("DEFAULT_GROUP", "prop", b, 8080)

	before := publishShareOf(t, "caddy_discovery_nacos_publish_seconds")
	cd := harness.StartCaddy(t, nacosCaddyPort, nacosProxy(map[string]any{"service": "prop"}), nacosServerApp(p.port))
	cd.ExpectBackends(t, 10*time.Second, "a")

	var total []time.Duration
	for i := range propagationChanges(t, 30) {
		present := i%2 == 0
		if present {
			reg.put(ib)
		} else {
			reg.remove(ib)
		}
		start := time.Now()
		for {
			x, _ := cd.Get("")
			y, _ := cd.Get("")
			seen := x == "b" || y == "b"
			if seen == present {
				break
			}
			if time.Since(start) > 15*time.Second {
				t.Fatalf("change %d not visible after 15s", i)
			}
			time.Sleep(time.Millisecond)
		}
		total = append(total, time.Since(start))
	}
	after := publishShareOf(t, "caddy_discovery_nacos_publish_seconds")
	pct := func(ds []time.Duration, q float64) time.Duration {
		s := slices.Clone(ds)
		slices.Sort(s)
		if len(s) == 0 {
			return 0
		}
		return s[min(len(s)-1, int(q*float64(len(s))))]
	}
	fmt.Printf("nacos propagation over %d changes (change call returned -> visible in requests): p50 %v, p99 %v, max %v\n",
		len(total), pct(total, 0.5), pct(total, 0.99), pct(total, 1))
	pushes, fast := after.count-before.count, after.within5ms-before.within5ms
	fmt.Printf("nacos own share over %d pushes (caddy_discovery_nacos_publish_seconds, SDK callback -> snapshot published): mean %v, %d within 5ms\n",
		pushes, time.Duration((after.sum-before.sum)/float64(max(pushes, 1))*float64(time.Second)), fast)
	// every change reached Caddy through the callback, so the histogram
	// must have counted each; our share is bounded by the issue at 5 ms p99
	if pushes < uint64(len(total)) {
		t.Fatalf("caddy_discovery_nacos_publish_seconds counted %d pushes for %d changes: the own-share metric is broken", pushes, len(total))
	}
	if slow := pushes - fast; p99Over(slow, pushes) {
		t.Fatalf("own share: %d of %d pushes took more than 5ms (p99 over 5ms)", slow, pushes)
	}
}
