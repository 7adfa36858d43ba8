//go:build integration

package integration

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"net/url"
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

	"github.com/go-zookeeper/zk"

	"github.com/caddy-discovery/caddy-discovery/integration/harness"
	"github.com/caddy-discovery/caddy-discovery/upstreams"
)

// Ports of the ZooKeeper tests: Caddy's sites and ZooKeeper's client ports,
// plain and TLS.
const (
	zkCaddyPort  = 18110
	zkClientPort = 22181
	zkSecurePort = 22182
)

// javaLib is where Debian's zookeeper and libcurator-discovery-java put
// their jars.
const javaLib = "/usr/share/java"

// zkServer is a real ZooKeeper 3.8 (Debian's zookeeper package) on
// loopback, standalone, with a client of the test's own.
type zkServer struct {
	*harness.Server
	addr string
	conn *zk.Conn
}

// startZooKeeper starts ZooKeeper in a new data directory, stopped when the
// test ends.
func startZooKeeper(t *testing.T) *zkServer { return startZooKeeperWith(t) }

// startZooKeeperWith starts ZooKeeper with more lines of zoo.cfg, such as
// a secureClientPort's settings.
func startZooKeeperWith(t *testing.T, config ...string) *zkServer {
	t.Helper()
	if err := harness.CheckPorts(zkClientPort, zkSecurePort); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	// tickTime 3000 as without a zoo.cfg: sessions last 6-60 s. Keys
	// ZooKeeper does not know become system properties zookeeper.<key>.
	cfg := append([]string{"tickTime=3000", "dataDir=" + filepath.Join(dir, "data"), fmt.Sprintf("clientPort=%d", zkClientPort),
		"admin.enableServer=false", "4lw.commands.whitelist=wchs"}, config...)
	if err := os.WriteFile(filepath.Join(dir, "zoo.cfg"), []byte(strings.Join(cfg, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// Debian's zookeeper.jar lists its dependencies in its manifest, but
	// not netty-codec, which the Netty connection factory (TLS) needs;
	// slf4j-simple writes the server's log to zookeeper.log.
	cp := strings.Join([]string{javaLib + "/zookeeper.jar", javaLib + "/netty-codec.jar", javaLib + "/slf4j-simple.jar", "/etc/zookeeper/conf"}, ":")
	srv := harness.StartServer(t, dir, "zookeeper", "ZooKeeper (Debian's zookeeper package)",
		"java", "-cp", cp, "org.apache.zookeeper.server.ZooKeeperServerMain", filepath.Join(dir, "zoo.cfg"))
	s := &zkServer{Server: srv, addr: fmt.Sprintf("127.0.0.1:%d", zkClientPort)}
	conn, _, err := zk.Connect([]string{s.addr}, 10*time.Second, zk.WithLogInfo(false), zk.WithLogger(discardLog{}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(conn.Close)
	s.conn = conn
	harness.Eventually(t, 30*time.Second, func() error {
		_, _, err := conn.Exists("/")
		return err
	})
	return s
}

type discardLog struct{}

func (discardLog) Printf(string, ...any) {}

// create writes a node and its missing parents.
func (s *zkServer) create(t *testing.T, path string, data []byte, flags int32) {
	t.Helper()
	parts := strings.Split(strings.Trim(path, "/"), "/")
	for i := 1; i < len(parts); i++ {
		p := "/" + strings.Join(parts[:i], "/")
		if _, err := s.conn.Create(p, nil, 0, zk.WorldACL(zk.PermAll)); err != nil && err != zk.ErrNodeExists {
			t.Fatal(err)
		}
	}
	if _, err := s.conn.Create(path, data, flags, zk.WorldACL(zk.PermAll)); err != nil {
		t.Fatal(err)
	}
}

var (
	zkRegistrarOnce sync.Once
	zkRegistrarDir  string
	zkRegistrarErr  error
)

// zkRegistrarClasspath compiles integration/zk-registrar (a Curator
// registrar, as Spring Cloud Zookeeper registers) once per test run and
// returns the classpath to run it with.
func zkRegistrarClasspath(t *testing.T) string {
	t.Helper()
	jars := []string{"curator-x-discovery", "curator-framework", "curator-client", "zookeeper", "zookeeper-jute",
		"jackson-databind", "jackson-core", "jackson-annotations", "guava"}
	cp := make([]string, len(jars))
	for i, j := range jars {
		cp[i] = filepath.Join(javaLib, j+".jar")
	}
	zkRegistrarOnce.Do(func() {
		dir, err := os.MkdirTemp("", "caddy-discovery-zk-registrar-")
		if err != nil {
			zkRegistrarErr = err
			return
		}
		atExit(func() { _ = os.RemoveAll(dir) })
		zkRegistrarDir = dir
		cmd := exec.Command("javac", "-d", dir, "-cp", strings.Join(cp, ":"), "Registrar.java",
			"org/springframework/cloud/zookeeper/discovery/ZookeeperInstance.java")
		cmd.Dir = "zk-registrar"
		if out, err := cmd.CombinedOutput(); err != nil {
			zkRegistrarErr = fmt.Errorf("javac integration/zk-registrar (needs Debian's libcurator-discovery-java): %v\n%s", err, out)
		}
	})
	if zkRegistrarErr != nil {
		t.Fatal(zkRegistrarErr)
	}
	return zkRegistrarDir + ":" + strings.Join(cp, ":")
}

// curatorInstance is a running Curator registrar process.
type curatorInstance struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	lines <-chan string
}

// registerCurator starts a registrar for one instance (session timeout 4 s)
// and waits until it has registered.
func registerCurator(t *testing.T, s *zkServer, service, id string, addr netip.AddrPort, metadata ...string) *curatorInstance {
	t.Helper()
	return startRegistrar(t, []string{"-Dsession=4000"}, s, "/services", service, id, addr, metadata...)
}

// startRegistrar starts the Curator registrar with the JVM options opts,
// and waits until it has registered.
func startRegistrar(t *testing.T, opts []string, s *zkServer, base, service, id string, addr netip.AddrPort, metadata ...string) *curatorInstance {
	t.Helper()
	args := append(append(opts, "-cp", zkRegistrarClasspath(t), "Registrar", s.addr, base, service, id,
		addr.Addr().String(), fmt.Sprint(addr.Port())), metadata...)
	cmd := exec.Command("java", args...)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	r := &curatorInstance{cmd: cmd, stdin: stdin, lines: startWithLines(t, cmd)}
	expectLine(t, r.lines, "registered", 30*time.Second)
	return r
}

// do sends the registrar a command and waits for its "ok".
func (r *curatorInstance) do(t *testing.T, command string) {
	t.Helper()
	if _, err := fmt.Fprintln(r.stdin, command); err != nil {
		t.Fatal(err)
	}
	expectLine(t, r.lines, "ok", 30*time.Second)
}

// zkProxy is a reverse_proxy handler with the zookeeper source.
func zkProxy(source map[string]any) string {
	source["source"] = "zookeeper"
	b, _ := json.Marshal(source)
	return fmt.Sprintf(`{"handler": "reverse_proxy", "load_balancing": {"selection_policy": {"policy": "round_robin"}}, "dynamic_upstreams": %s}`, b)
}

// zkApp is the zookeeper app with the default server at addr, its periodic
// listing turned off: only the watches can bring a change.
func zkApp(addr string) string {
	return fmt.Sprintf(`"zookeeper": {"servers": {"default": {"servers": [%q], "session_timeout": "4s", "relist_interval": -1}}}`, addr)
}

// TestZooKeeperCurator: instances registered through real Curator service
// discovery, the way Spring Cloud Zookeeper registers them, reach Caddy
// through ZooKeeper's watches alone (the periodic listing is off): a
// registration, a status DOWN, OUT_OF_SERVICE and UP again (Spring's
// instance_status), an instance disabled and enabled again in Curator's own
// serialization (ServiceInstance.enabled), an unregistration, and a
// registrar killed with -9, whose session ends and takes its ephemeral node
// with it within the session timeout; metadata selection, and a weight in
// the payload's metadata.
func TestZooKeeperCurator(t *testing.T) {
	s := startZooKeeper(t)
	n := harness.NewNetns(t)
	a, b, c := n.AddAddr(t), n.AddAddr(t), n.AddAddr(t)
	n.Backend(t, "a", a, 8080)
	n.Backend(t, "b", b, 8080)
	n.Backend(t, "c", c, 8080)
	da, db, dc := netip.AddrPortFrom(a, 8080), netip.AddrPortFrom(b, 8080), netip.AddrPortFrom(c, 8080)
	ra := registerCurator(t, s, "orders", "a", da, "zone=east")
	cd := harness.StartCaddy(t, zkCaddyPort, zkProxy(map[string]any{"service": "orders"}), zkApp(s.addr))
	expectDump(t, cd, "zookeeper", 15*time.Second, "first listing", map[string]float64{da.String(): 1}, "a")

	const within = 2 * time.Second
	rb := registerCurator(t, s, "orders", "b", db, "zone=west")
	expectDump(t, cd, "zookeeper", within, "curator registers b", map[string]float64{da.String(): 1, db.String(): 1}, "a", "b")
	rb.do(t, "status DOWN")
	expectDump(t, cd, "zookeeper", within, "b's instance_status DOWN", map[string]float64{da.String(): 1}, "a")
	rb.do(t, "status UP")
	expectDump(t, cd, "zookeeper", within, "b's instance_status UP", map[string]float64{da.String(): 1, db.String(): 1}, "a", "b")
	rb.do(t, "status OUT_OF_SERVICE")
	expectDump(t, cd, "zookeeper", within, "b's instance_status OUT_OF_SERVICE", map[string]float64{da.String(): 1}, "a")
	rb.do(t, "status UP")
	expectDump(t, cd, "zookeeper", within, "b's instance_status UP again", map[string]float64{da.String(): 1, db.String(): 1}, "a", "b")
	// Curator's own serialization, with ServiceInstance.enabled.
	rc := startRegistrar(t, []string{"-Dsession=4000", "-Dcompatible=false"}, s, "/services", "orders", "c", dc)
	expectDump(t, cd, "zookeeper", within, "curator (full form) registers c", map[string]float64{da.String(): 1, db.String(): 1, dc.String(): 1}, "a", "b", "c")
	rc.do(t, "enabled false")
	expectDump(t, cd, "zookeeper", within, "c's enabled false", map[string]float64{da.String(): 1, db.String(): 1}, "a", "b")
	rc.do(t, "enabled true")
	expectDump(t, cd, "zookeeper", within, "c's enabled true", map[string]float64{da.String(): 1, db.String(): 1, dc.String(): 1}, "a", "b", "c")
	rc.do(t, "unregister")
	expectDump(t, cd, "zookeeper", within, "c unregisters", map[string]float64{da.String(): 1, db.String(): 1}, "a", "b")
	ra.do(t, "unregister")
	expectDump(t, cd, "zookeeper", within, "a unregisters", map[string]float64{db.String(): 1}, "b")
	_ = rb.cmd.Process.Signal(syscall.SIGKILL)
	killed := time.Now()
	// The registrar asks for 4 s; ZooKeeper raises it to its minimum, 2 ×
	// tickTime = 6 s, and expires sessions on tick boundaries (3 s): the
	// node goes within 9 s, and Caddy follows within a second of that.
	expectDumpError(t, "zookeeper", 10*time.Second, "/services/orders has no instances")
	t.Logf("registrar killed: its node went after %v (session timeout 6 s, ticks of 3 s)", time.Since(killed).Round(time.Millisecond))

	cd.Load(zkProxy(map[string]any{"service": "orders", "metadata": map[string]string{"zone": "west"}}), zkApp(s.addr))
	registerCurator(t, s, "orders", "a2", da, "zone=east")
	registerCurator(t, s, "orders", "b2", db, "zone=west", "weight=5")
	expectDump(t, cd, "zookeeper", within, "metadata zone=west, its weight 5", map[string]float64{db.String(): 5}, "b")
}

// TestZooKeeperDigest: a registrar that authenticates with ZooKeeper's
// digest scheme and writes its nodes readable by its user alone (Curator's
// authorization and ACLProvider): without credentials, or with a wrong
// password, Caddy says the ACL keeps it out and what to set; with the
// user's, it serves the instance. The password appears nowhere Caddy shows.
func TestZooKeeperDigest(t *testing.T) {
	const password = "zk-digest-s3cret"
	s := startZooKeeper(t)
	n := harness.NewNetns(t)
	a := n.AddAddr(t)
	n.Backend(t, "a", a, 8080)
	da := netip.AddrPortFrom(a, 8080)
	startRegistrar(t, []string{"-Dsession=4000", "-Ddigest=orders:" + password}, s, "/secure", "orders", "a", da)
	if _, _, err := s.conn.Children("/secure/orders"); !errors.Is(err, zk.ErrNoAuth) {
		t.Fatalf("listing /secure/orders without credentials: %v; want the ACL to refuse it", err)
	}
	app := func(user, pw string) string {
		return fmt.Sprintf(`"zookeeper": {"servers": {"default": {"servers": [%q], "relist_interval": -1, "username": %q, "password": %q}}}`, s.addr, user, pw)
	}
	proxy := zkProxy(map[string]any{"service": "orders", "base_path": "/secure"})
	logFile := filepath.Join(t.TempDir(), "caddy.log")
	cd := harness.StartCaddyLogged(t, zkCaddyPort, proxy, zkApp(s.addr), logFile)
	expectDumpError(t, "zookeeper", 10*time.Second, "the ACL of /secure/orders does not let Caddy read it (no auth); set username and password")
	cd.Load(proxy, app("orders", "wrong-"+password))
	expectDumpError(t, "zookeeper", 10*time.Second, "the ACL of /secure/orders does not let Caddy read it (no auth)")
	cd.Load(proxy, app("orders", password))
	expectDump(t, cd, "zookeeper", 10*time.Second, "digest user", map[string]float64{da.String(): 1}, "a")

	seen, _ := json.Marshal(upstreams.Dump())
	logged, err := os.ReadFile(logFile)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(logged), "does not let Caddy read it") {
		t.Fatalf("the log has no line about the refusal:\n%s", logged)
	}
	for where, text := range map[string]string{"admin dump": string(seen), "log": string(logged)} {
		if strings.Contains(text, password) {
			t.Errorf("the %s shows the password", where)
		}
	}
}

// TestZooKeeperSeveralServers: with several servers, one of which refuses
// connections (an ensemble member that is down), Caddy's session lives on
// the one that works, whichever comes first in the list.
func TestZooKeeperSeveralServers(t *testing.T) {
	s := startZooKeeper(t)
	d := harness.NewNetns(t).Backends(t, 8080, "a", "b")
	da, db := d[0], d[1]
	s.create(t, "/services/orders/a", curatorJSON("a", da), zk.FlagEphemeral)
	down := freeAddr(t) // nothing listens there
	app := fmt.Sprintf(`"zookeeper": {"servers": {"default": {"servers": [%q, %q], "relist_interval": -1}}}`, down, s.addr)
	cd := harness.StartCaddy(t, zkCaddyPort, zkProxy(map[string]any{"service": "orders"}), app)
	expectDump(t, cd, "zookeeper", 15*time.Second, "first listing, one server down", map[string]float64{da.String(): 1}, "a")
	s.create(t, "/services/orders/b", curatorJSON("b", db), zk.FlagEphemeral)
	expectDump(t, cd, "zookeeper", 2*time.Second, "watched through the server that works", map[string]float64{da.String(): 1, db.String(): 1}, "a", "b")
}

// TestZooKeeperTLS: ZooKeeper's secureClientPort (its Netty connection
// factory) requiring client certificates: Caddy verifies the server against
// ca_file and presents cert_file; without the CA, or without a client
// certificate, it says which field to set.
func TestZooKeeperTLS(t *testing.T) {
	pki := newTestPKI(t, t.TempDir())
	s := startZooKeeperWith(t, fmt.Sprintf("secureClientPort=%d", zkSecurePort),
		"serverCnxnFactory=org.apache.zookeeper.server.NettyServerCnxnFactory",
		"ssl.keyStore.location="+pki.serverPEM, "ssl.keyStore.type=PEM",
		"ssl.trustStore.location="+pki.ca, "ssl.trustStore.type=PEM", "ssl.clientAuth=need")
	n := harness.NewNetns(t)
	a := n.AddAddr(t)
	n.Backend(t, "a", a, 8080)
	da := netip.AddrPortFrom(a, 8080)
	registerCurator(t, s, "orders", "a", da)
	app := func(fields string) string {
		return fmt.Sprintf(`"zookeeper": {"servers": {"default": {"servers": ["127.0.0.1:%d"], "relist_interval": -1%s}}}`, zkSecurePort, fields)
	}
	proxy := zkProxy(map[string]any{"service": "orders"})
	full := fmt.Sprintf(`, "ca_file": %q, "cert_file": %q, "key_file": %q`, pki.ca, pki.clientCert, pki.clientKey)
	cd := harness.StartCaddy(t, zkCaddyPort, proxy, app(full))
	expectDump(t, cd, "zookeeper", 15*time.Second, "TLS with a client certificate", map[string]float64{da.String(): 1}, "a")

	cd.Load(proxy, app(fmt.Sprintf(`, "cert_file": %q, "key_file": %q`, pki.clientCert, pki.clientKey)))
	expectDumpError(t, "zookeeper", 15*time.Second, "not signed by a CA Caddy trusts", "set ca_file")
	cd.Load(proxy, app(fmt.Sprintf(`, "ca_file": %q`, pki.ca)))
	expectDumpError(t, "zookeeper", 15*time.Second, "client certificate", "set cert_file and key_file")
}

// TestZooKeeperRestarted: ZooKeeper crashes (SIGKILL) under a request loop
// and starts again on its data 2 s later, within the sessions' timeout:
// no request fails, the sessions (Caddy's and the registrars') resume, so
// the registrars' ephemeral nodes stay, and a registration made once it is
// back is served through the watches alone (the periodic listing is off);
// its time from recovery is reported on a "fault:" line.
func TestZooKeeperRestarted(t *testing.T) {
	s := startZooKeeper(t)
	n := harness.NewNetns(t)
	a, b, c := n.AddAddr(t), n.AddAddr(t), n.AddAddr(t)
	for name, ip := range map[string]netip.Addr{"a": a, "b": b, "c": c} {
		n.Backend(t, name, ip, 8080)
	}
	da, db, dc := netip.AddrPortFrom(a, 8080), netip.AddrPortFrom(b, 8080), netip.AddrPortFrom(c, 8080)
	registerCurator(t, s, "orders", "a", da)
	registerCurator(t, s, "orders", "b", db)
	cd := harness.StartCaddy(t, zkCaddyPort, zkProxy(map[string]any{"service": "orders"}), zkApp(s.addr))
	expectDump(t, cd, "zookeeper", 15*time.Second, "first listing", map[string]float64{da.String(): 1, db.String(): 1}, "a", "b")
	tr := startTraffic(t, cd, []string{"a", "b", "c"}, "")
	time.Sleep(time.Second)

	s.Stop(syscall.SIGKILL)
	stopped := time.Now()
	expectDumpError(t, "zookeeper", 10*time.Second, `cannot reach zookeeper server "default"`, "serving the last known instances meanwhile")
	time.Sleep(time.Until(stopped.Add(2 * time.Second))) // traffic while ZooKeeper is down
	s.Restart()
	harness.Eventually(t, 30*time.Second, func() error {
		_, _, err := s.conn.Exists("/services/orders")
		return err
	})
	back := time.Now()
	registerCurator(t, s, "orders", "c", dc)
	served, ok := tr.firstSeen("", "c", back, faultServeWait)
	checkRecovery(t, "zookeeper restarted", back, served, ok)
	checkTraffic(t, tr, "zookeeper restarted")
	expectDump(t, cd, "zookeeper", 5*time.Second, "after the restart: the sessions resumed, a and b still registered",
		map[string]float64{da.String(): 1, db.String(): 1, dc.String(): 1}, "a", "b", "c")
}

// TestZooKeeperAPISIX: instances written in Apache APISIX's ZooKeeper
// layout (apisix/discovery/zookeeper/utils.lua: a {"host","port","weight",
// "metadata"} JSON per node under /apisix/discovery/zk/<service>; APISIX
// users write these nodes themselves) split traffic by their weights with
// lb_policy registry_weighted, and follow a weight change (a node's data:
// its data watch) and a node of weight 0 (no request, as in APISIX); read
// as another format (curator), each node is explained by name.
func TestZooKeeperAPISIX(t *testing.T) {
	s := startZooKeeper(t)
	n := harness.NewNetns(t)
	a, b := n.AddAddr(t), n.AddAddr(t)
	n.Backend(t, "a", a, 8080)
	n.Backend(t, "b", b, 8080)
	node := func(ip netip.Addr, weight int) []byte {
		return []byte(fmt.Sprintf(`{"host":%q,"port":8080,"weight":%d,"metadata":{"zone":"east"}}`, ip, weight))
	}
	s.create(t, "/apisix/discovery/zk/orders/a", node(a, 1), zk.FlagEphemeral)
	s.create(t, "/apisix/discovery/zk/orders/b", node(b, 4), zk.FlagEphemeral)
	h, _ := json.Marshal(map[string]any{
		"handler":           "reverse_proxy",
		"dynamic_upstreams": map[string]any{"source": "zookeeper", "service": "orders", "format": "apisix", "metadata": map[string]string{"zone": "east"}},
		"load_balancing":    map[string]any{"selection_policy": map[string]any{"policy": "registry_weighted"}},
	})
	cd := harness.StartCaddy(t, zkCaddyPort, string(h), zkApp(s.addr))
	cd.ExpectBackends(t, 15*time.Second, "a", "b")
	if err := shares(cd.Spread(100), map[string]float64{"a": 20, "b": 80}, 3); err != nil {
		t.Fatal(err)
	}
	for path, data := range map[string][]byte{"/apisix/discovery/zk/orders/a": node(a, 3), "/apisix/discovery/zk/orders/b": node(b, 1)} {
		if _, err := s.conn.Set(path, data, -1); err != nil {
			t.Fatal(err)
		}
	}
	harness.Eventually(t, 5*time.Second, func() error { return shares(cd.Spread(100), map[string]float64{"a": 75, "b": 25}, 3) })
	if _, err := s.conn.Set("/apisix/discovery/zk/orders/b", node(b, 0), -1); err != nil {
		t.Fatal(err)
	}
	expectDump(t, cd, "zookeeper", 2*time.Second, "apisix: b's weight 0", map[string]float64{netip.AddrPortFrom(a, 8080).String(): 3}, "a")

	// The same nodes read in another format: each is explained by name.
	cd.Load(zkProxy(map[string]any{"service": "orders", "base_path": "/apisix/discovery/zk"}), zkApp(s.addr))
	expectDumpError(t, "zookeeper", 5*time.Second, "none of the 2 nodes under /apisix/discovery/zk/orders is a usable curator instance: 2 not in the format (such as node \"a\": ")
}

// TestZooKeeperPropagation measures, over 20 changes (PROPAGATION_CHANGES),
// the time from a node's creation or deletion returning to the change being
// visible in requests, and Caddy's own share of it
// (caddy_discovery_zookeeper_publish_seconds: watch event received ->
// snapshot published), which must stay within 5 ms. The nodes are written
// as Curator writes them (curatorJSON).
func TestZooKeeperPropagation(t *testing.T) {
	s := startZooKeeper(t)
	n := harness.NewNetns(t)
	a, b := n.AddAddr(t), n.AddAddr(t)
	n.Backend(t, "a", a, 8080)
	n.Backend(t, "b", b, 8080)
	s.create(t, "/services/orders/a", curatorJSON("a", netip.AddrPortFrom(a, 8080)), zk.FlagEphemeral)
	cd := harness.StartCaddy(t, zkCaddyPort, zkProxy(map[string]any{"service": "orders"}), zkApp(s.addr))
	cd.ExpectBackends(t, 15*time.Second, "a")
	before := publishShareOf(t, "caddy_discovery_zookeeper_publish_seconds", "connection", "default")
	took := followChanges(t, cd, propagationChanges(t, 20), "b", func(i int) bool {
		if i%2 == 0 {
			s.create(t, "/services/orders/b", curatorJSON("b", netip.AddrPortFrom(b, 8080)), zk.FlagEphemeral)
			return true
		}
		if err := s.conn.Delete("/services/orders/b", -1); err != nil {
			t.Fatal(err)
		}
		return false
	})
	reportShare(t, "zookeeper", took, before, "connection", "default")
}

// TestZooKeeperDubbo: Dubbo interface-level providers, written as Dubbo
// writes them (ephemeral nodes named by the URL-encoded provider URL under
// /dubbo/<interface>/providers), with their weights, which split traffic
// with registry_weighted, followed as they come and go; a disabled provider
// (enabled=false), a node that is no provider URL and a protocol Caddy does
// not proxy (dubbo://) are left out and explained.
func TestZooKeeperDubbo(t *testing.T) {
	s := startZooKeeper(t)
	n := harness.NewNetns(t)
	a, b := n.AddAddr(t), n.AddAddr(t)
	n.Backend(t, "a", a, 50051)
	n.Backend(t, "b", b, 50051)
	const iface = "org.example.GreeterService"
	provider := func(proto string, ip netip.Addr, params string) string {
		u := fmt.Sprintf("%s://%s/%s?anyhost=true&application=greeter&interface=%s&side=provider&%s", proto, netip.AddrPortFrom(ip, 50051), iface, iface, params)
		return "/dubbo/" + iface + "/providers/" + url.QueryEscape(u)
	}
	s.create(t, provider("tri", a, "weight=100&version=1.0.0"), []byte(a.String()), zk.FlagEphemeral)
	cd := harness.StartCaddy(t, zkCaddyPort, zkProxy(map[string]any{"service": iface, "format": "dubbo"}), zkApp(s.addr))
	expectDump(t, cd, "zookeeper", 15*time.Second, "dubbo: first listing", map[string]float64{netip.AddrPortFrom(a, 50051).String(): 100}, "a")
	s.create(t, provider("tri", b, "weight=300&version=1.0.0"), []byte(b.String()), zk.FlagEphemeral)
	expectDump(t, cd, "zookeeper", 2*time.Second, "dubbo: b provides, weight 300", map[string]float64{netip.AddrPortFrom(a, 50051).String(): 100, netip.AddrPortFrom(b, 50051).String(): 300}, "a", "b")

	// The weights split traffic with lb_policy registry_weighted.
	weighted, _ := json.Marshal(map[string]any{
		"handler":           "reverse_proxy",
		"dynamic_upstreams": map[string]any{"source": "zookeeper", "service": iface, "format": "dubbo"},
		"load_balancing":    map[string]any{"selection_policy": map[string]any{"policy": "registry_weighted"}},
	})
	cd.Load(string(weighted), zkApp(s.addr))
	harness.Eventually(t, 5*time.Second, func() error { return shares(cd.Spread(100), map[string]float64{"a": 25, "b": 75}, 3) })
	cd.Load(zkProxy(map[string]any{"service": iface, "format": "dubbo"}), zkApp(s.addr))

	if err := s.conn.Delete(provider("tri", a, "weight=100&version=1.0.0"), -1); err != nil {
		t.Fatal(err)
	}
	expectDump(t, cd, "zookeeper", 2*time.Second, "dubbo: a stops providing", map[string]float64{netip.AddrPortFrom(b, 50051).String(): 300}, "b")
	// A disabled provider and a node that is no provider URL are left out.
	s.create(t, provider("tri", a, "weight=100&enabled=false"), nil, zk.FlagEphemeral)
	s.create(t, "/dubbo/"+iface+"/providers/not-a-url", nil, zk.FlagEphemeral)
	time.Sleep(500 * time.Millisecond) // the watch has fired: nothing changes
	expectDump(t, cd, "zookeeper", 2*time.Second, "dubbo: a disabled, a node of garbage", map[string]float64{netip.AddrPortFrom(b, 50051).String(): 300}, "b")
	if err := s.conn.Delete(provider("tri", b, "weight=300&version=1.0.0"), -1); err != nil {
		t.Fatal(err)
	}
	s.create(t, provider("dubbo", b, "weight=300"), nil, zk.FlagEphemeral)
	expectDumpError(t, "zookeeper", 2*time.Second, "none of the 3 nodes under /dubbo/"+iface+"/providers is a usable dubbo instance",
		"1 disabled or not UP, 2 not in the format", "protocol dubbo, which Caddy does not proxy here (protocols: tri, rest)")
}

// curatorJSON is a node's data as Curator writes it for Spring Cloud
// Zookeeper (TestZooKeeperCurator reads the real thing).
func curatorJSON(id string, addr netip.AddrPort) []byte {
	return []byte(fmt.Sprintf(`{"name":"orders","id":%q,"address":%q,"port":%d,"sslPort":null,"payload":{"@class":"org.springframework.cloud.zookeeper.discovery.ZookeeperInstance","id":%q,"name":"orders","metadata":{"instance_status":"UP"}},"registrationTimeUTC":0,"serviceType":"DYNAMIC","uriSpec":null}`,
		id, addr.Addr(), addr.Port(), id))
}

// TestZooKeeperSessionExpiry: Caddy's connection is cut for longer than its
// session timeout while the instances change; ZooKeeper expires the session,
// taking every watch with it. Meanwhile the last known instances serve and
// the problem is reported; once the connection is back, a new session lists
// the path again (the periodic listing is off), and the changes are served.
func TestZooKeeperSessionExpiry(t *testing.T) {
	s := startZooKeeper(t)
	f := harness.NewForwarder(t, s.addr)
	n := harness.NewNetns(t)
	a, b := n.AddAddr(t), n.AddAddr(t)
	n.Backend(t, "a", a, 8080)
	n.Backend(t, "b", b, 8080)
	da, db := netip.AddrPortFrom(a, 8080), netip.AddrPortFrom(b, 8080)
	s.create(t, "/services/orders/a", curatorJSON("a", da), 0)
	cd := harness.StartCaddy(t, zkCaddyPort, zkProxy(map[string]any{"service": "orders"}), zkApp(fmt.Sprintf("127.0.0.1:%d", f.Port())))
	expectDump(t, cd, "zookeeper", 15*time.Second, "first listing", map[string]float64{da.String(): 1}, "a")
	restarts := discoveryMetric(t, "caddy_discovery_watch_restarts_total", "connection", "default")

	f.SetOpen(false)
	f.Cut()
	cut := time.Now()
	s.create(t, "/services/orders/b", curatorJSON("b", db), 0)
	if err := s.conn.Delete("/services/orders/a", -1); err != nil {
		t.Fatal(err)
	}
	expectDumpError(t, "zookeeper", 10*time.Second, `cannot reach zookeeper server "default"`, "serving the last known instances meanwhile")
	t.Logf("connection cut: reported after %v", time.Since(cut).Round(time.Millisecond))
	if spread := cd.Spread(12); !slices.Equal(harness.Names(spread), []string{"a"}) {
		t.Errorf("during the cut, requests reached %v, want the last known a", spread)
	}
	time.Sleep(10 * time.Second) // well past the 4 s session timeout: ZooKeeper expires the session
	f.SetOpen(true)
	expectDump(t, cd, "zookeeper", 15*time.Second, "new session lists again", map[string]float64{db.String(): 1}, "b")
	if got := discoveryMetric(t, "caddy_discovery_watch_restarts_total", "connection", "default"); got != restarts+1 {
		t.Errorf("watch restarts %v, want %v (one new session)", got, restarts+1)
	}
	// the new session's watches work
	s.create(t, "/services/orders/a", curatorJSON("a", da), 0)
	expectDump(t, cd, "zookeeper", 2*time.Second, "a change on the new session", map[string]float64{da.String(): 1, db.String(): 1}, "a", "b")
}

// zkWatches asks ZooKeeper (the wchs command) how many watches its clients
// hold in all; ZooKeeper 3.8 counts the data watches there (one per
// instance Caddy follows), not the children watches.
func zkWatches(t *testing.T, s *zkServer) int {
	t.Helper()
	return int(zkStat(t, s, "wchs", "Total watches:"))
}

// zkStat sends ZooKeeper a four-letter command (one its
// 4lw.commands.whitelist allows) and returns the number after label in
// the answer.
func zkStat(t *testing.T, s *zkServer, command, label string) float64 {
	t.Helper()
	c, err := net.DialTimeout("tcp", s.addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte(command)); err != nil {
		t.Fatal(err)
	}
	out, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(out), label)
	if !ok {
		t.Fatalf("%s answered %q", command, out)
	}
	value, _, _ := strings.Cut(rest, "\n")
	n, err := strconv.ParseFloat(strings.TrimSpace(value), 64)
	if err != nil {
		t.Fatalf("%s answered %q", command, out)
	}
	return n
}

// TestZooKeeperReloadsKeepOneWatch: 20 reloads, alternating two configs whose
// sites read the same path with other selections, keep one connection to
// ZooKeeper (counted by a forwarder) and one set of watches (ZooKeeper's own
// count, the same as for the first config); the sites serve right after each
// reload. caddy.Stop leaves no watch behind.
func TestZooKeeperReloadsKeepOneWatch(t *testing.T) {
	s := startZooKeeper(t)
	f := harness.NewForwarder(t, s.addr)
	n := harness.NewNetns(t)
	a := n.AddAddr(t)
	n.Backend(t, "a", a, 8080)
	da := netip.AddrPortFrom(a, 8080)
	s.create(t, "/services/orders/a", curatorJSON("a", da), 0)
	app := zkApp(fmt.Sprintf("127.0.0.1:%d", f.Port()))
	configs := []string{
		zkProxy(map[string]any{"service": "orders"}),
		zkProxy(map[string]any{"service": "orders", "metadata": map[string]string{"instance_status": "UP"}}),
	}
	cd := harness.StartCaddy(t, zkCaddyPort, configs[0], app)
	expectDump(t, cd, "zookeeper", 15*time.Second, "first listing", map[string]float64{da.String(): 1}, "a")
	// (the watches are armed watchSettle, 100 ms, after the first look)
	var watches int
	harness.Eventually(t, 2*time.Second, func() error {
		if watches = zkWatches(t, s); watches != 1 {
			return fmt.Errorf("ZooKeeper holds %d data watches for one instance, want 1", watches)
		}
		return nil
	})
	for i := range 20 {
		cd.Load(configs[(i+1)%2], app)
		if spread := cd.Spread(3); !slices.Equal(harness.Names(spread), []string{"a"}) {
			t.Fatalf("reload %d: requests reached %v", i+1, spread)
		}
	}
	if got := f.Accepted(); got != 1 {
		t.Errorf("%d connections to ZooKeeper over 20 reloads, want 1", got)
	}
	if got := zkWatches(t, s); got != watches {
		t.Errorf("ZooKeeper holds %d watches after 20 reloads, %d before them", got, watches)
	}
	cd.Stop()
	harness.Eventually(t, 10*time.Second, func() error {
		if got := zkWatches(t, s); got != 0 {
			return fmt.Errorf("ZooKeeper holds %d watches after caddy.Stop", got)
		}
		return nil
	})
}

// TestZooKeeperHung: ZooKeeper stops answering (SIGSTOP) with its
// connections open: Caddy reports it within 15 s, keeps serving the last
// known instances, and follows changes again once it answers (SIGCONT).
func TestZooKeeperHung(t *testing.T) {
	s := startZooKeeper(t)
	d := harness.NewNetns(t).Backends(t, 8080, "a", "b")
	da, db := d[0], d[1]
	s.create(t, "/services/orders/a", curatorJSON("a", da), 0)
	cd := harness.StartCaddy(t, zkCaddyPort, zkProxy(map[string]any{"service": "orders"}), zkApp(s.addr))
	expectDump(t, cd, "zookeeper", 15*time.Second, "first listing", map[string]float64{da.String(): 1}, "a")
	s.Signal(syscall.SIGSTOP)
	stopped := time.Now()
	expectDumpError(t, "zookeeper", 15*time.Second, `cannot reach zookeeper server "default"`)
	t.Logf("hung ZooKeeper: reported after %v", time.Since(stopped).Round(time.Millisecond))
	if spread := cd.Spread(12); !slices.Equal(harness.Names(spread), []string{"a"}) {
		t.Errorf("while ZooKeeper hangs, requests reached %v, want the last known a", spread)
	}
	s.Signal(syscall.SIGCONT)
	harness.Eventually(t, 20*time.Second, func() error {
		for _, d := range upstreams.Dump() {
			if d.Source == "zookeeper" && d.Error != "" {
				return fmt.Errorf("still: %s", d.Error)
			}
		}
		return nil
	})
	s.create(t, "/services/orders/b", curatorJSON("b", db), 0)
	expectDump(t, cd, "zookeeper", 2*time.Second, "a change after the hang", map[string]float64{da.String(): 1, db.String(): 1}, "a", "b")
}
