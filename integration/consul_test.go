//go:build integration

package integration

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/hashicorp/consul/api"

	"github.com/caddy-discovery/caddy-discovery/integration/harness"
	"github.com/caddy-discovery/caddy-discovery/upstreams"
)

// consulCaddyPort is where Caddy listens in the Consul tests; apart from the
// other tests' ports, as Caddy listens with SO_REUSEPORT.
const consulCaddyPort = 18095

// consulAgent is a real Consul agent started by start-consul.sh (a -dev
// agent), or a persistent one, and a consul/api client to it with the
// management token, if ACLs are on.
type consulAgent struct {
	dir   string
	port  int
	acl   bool
	token string // the management token (DIR/acl-token), "" without ACLs
	api   *api.Client
	// persistent agents are a single server with its catalog on disk, as
	// production servers keep it: a -dev agent's catalog is in memory, and
	// after a restart it re-registers its services only at its first
	// anti-entropy sync, up to 3 s after electing itself (agent/ae in
	// v1.14.8), answering "no instances" meanwhile.
	persistent bool
	// maxConns, if not 0, is the agent's http_max_conns_per_client.
	maxConns int
	cmd      *exec.Cmd
	exited   chan struct{}
	// readToken may read every service and node (the shared agent's)
	readToken string
}

// startConsul starts a -dev agent (start-consul.sh) or a persistent server
// in a new directory on port (and the next 3), stopped (and the directory
// removed) when the test ends.
func startConsul(t testing.TB, port int, acl, persistent bool) *consulAgent {
	t.Helper()
	return startAgent(t, &consulAgent{port: port, acl: acl, persistent: persistent})
}

// startAgent starts the agent c describes (its port, acl, persistent and
// maxConns), as startConsul does.
func startAgent(t testing.TB, c *consulAgent) *consulAgent {
	t.Helper()
	dir, err := os.MkdirTemp("", "caddy-discovery-consul-")
	if err != nil {
		t.Fatal(err)
	}
	c.dir = dir
	t.Cleanup(func() {
		if c.persistent {
			_ = c.stopPersistent("")
		} else {
			_ = c.run("stop-consul.sh")
		}
		_ = os.RemoveAll(dir)
	})
	c.start(t)
	return c
}

func (c *consulAgent) run(script string) error {
	cmd := exec.Command("./"+script, c.dir)
	cmd.Env = append(os.Environ(), fmt.Sprintf("CONSUL_HTTP_PORT=%d", c.port))
	if c.acl {
		cmd.Env = append(cmd.Env, "CONSUL_ACL=1")
	}
	if c.maxConns != 0 {
		cmd.Env = append(cmd.Env, fmt.Sprintf("CONSUL_HTTP_MAX_CONNS_PER_CLIENT=%d", c.maxConns))
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%s %s: %v\n%s", script, c.dir, err, out)
	}
	return nil
}

func (c *consulAgent) start(t testing.TB) {
	t.Helper()
	if err := harness.CheckPorts(c.port, c.port+1, c.port+2, c.port+3); err != nil {
		t.Fatal(err)
	}
	start := c.run
	if c.persistent {
		start = c.startPersistent
	}
	if err := start("start-consul.sh"); err != nil {
		t.Fatal(err)
	}
	if c.acl {
		b, err := os.ReadFile(filepath.Join(c.dir, "acl-token"))
		if err != nil {
			t.Fatalf("reading the management token: %v", err)
		}
		c.token = strings.TrimSpace(string(b))
	}
	ac, err := api.NewClient(&api.Config{Address: fmt.Sprintf("127.0.0.1:%d", c.port), Token: c.token})
	if err != nil {
		t.Fatal(err)
	}
	c.api = ac
}

func (c *consulAgent) stop(t testing.TB) {
	t.Helper()
	stop := c.run
	if c.persistent {
		stop = c.stopPersistent
	}
	if err := stop("stop-consul.sh"); err != nil {
		t.Fatal(err)
	}
}

// startPersistent starts a single Consul server with its data in dir, the
// binary from build-consul.sh, and waits until it has elected itself and
// lists its node.
func (c *consulAgent) startPersistent(string) error {
	out, err := exec.Command("./build-consul.sh").Output()
	if err != nil {
		return fmt.Errorf("build-consul.sh: %v", err)
	}
	bin := strings.TrimSpace(string(out))
	cfg := fmt.Sprintf(`data_dir = %q
server = true
bootstrap_expect = 1
bind_addr = "127.0.0.1"
client_addr = "127.0.0.1"
node_name = "persistent-%d"
log_level = "info"
performance { raft_multiplier = 1 }
ports {
  http = %d
  server = %d
  serf_lan = %d
  serf_wan = %d
  dns = -1
  grpc = -1
  grpc_tls = -1
}
`, filepath.Join(c.dir, "data"), c.port, c.port, c.port+1, c.port+2, c.port+3)
	if err := os.WriteFile(filepath.Join(c.dir, "server.hcl"), []byte(cfg), 0o600); err != nil {
		return err
	}
	logf, err := os.OpenFile(filepath.Join(c.dir, "consul.out"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	c.cmd = exec.Command(bin, "agent", "-config-file", filepath.Join(c.dir, "server.hcl"))
	c.cmd.Stdout, c.cmd.Stderr = logf, logf
	if err := c.cmd.Start(); err != nil {
		logf.Close()
		return err
	}
	c.exited = make(chan struct{})
	go func() { _ = c.cmd.Wait(); logf.Close(); close(c.exited) }()
	ac, err := api.NewClient(&api.Config{Address: fmt.Sprintf("127.0.0.1:%d", c.port)})
	if err != nil {
		return err
	}
	node := fmt.Sprintf("persistent-%d", c.port)
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-c.exited:
			b, _ := os.ReadFile(filepath.Join(c.dir, "consul.out"))
			return fmt.Errorf("consul exited:\n%s", b)
		case <-time.After(100 * time.Millisecond):
		}
		if leader, err := ac.Status().Leader(); err != nil || leader == "" {
			continue
		}
		if n, _, err := ac.Catalog().Node(node, nil); err == nil && n != nil {
			return nil
		}
	}
	_ = c.stopPersistent("")
	return errors.New("the persistent consul server did not elect itself within 30s")
}

func (c *consulAgent) stopPersistent(string) error {
	if c.cmd == nil {
		return nil
	}
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.exited:
	case <-time.After(10 * time.Second):
		_ = c.cmd.Process.Kill()
		<-c.exited
	}
	c.cmd = nil
	return nil
}

var (
	consulOnce  sync.Once
	sharedAgent *consulAgent
	consulErr   error
)

// sharedConsul is the agent most Consul tests share, with ACLs on (default
// deny), started on first use and stopped after all tests. Caddy reads it
// with readToken, whose policy may read every service and node.
func sharedConsul(t testing.TB) *consulAgent {
	t.Helper()
	consulOnce.Do(func() {
		dir, err := os.MkdirTemp("", "caddy-discovery-consul-")
		if err != nil {
			consulErr = err
			return
		}
		c := &consulAgent{dir: dir, port: 18500, acl: true}
		atExit(func() {
			_ = c.run("stop-consul.sh")
			_ = os.RemoveAll(dir)
		})
		if consulErr = c.run("start-consul.sh"); consulErr != nil {
			return
		}
		b, err := os.ReadFile(filepath.Join(dir, "acl-token"))
		if err != nil {
			consulErr = err
			return
		}
		c.token = strings.TrimSpace(string(b))
		if c.api, consulErr = api.NewClient(&api.Config{Address: fmt.Sprintf("127.0.0.1:%d", c.port), Token: c.token}); consulErr != nil {
			return
		}
		c.readToken, consulErr = c.tokenWith("caddy-read", `service_prefix "" { policy = "read" }
node_prefix "" { policy = "read" }`)
		sharedAgent = c
	})
	if consulErr != nil {
		t.Fatalf("starting consul: %v", consulErr)
	}
	return sharedAgent
}

// tokenWith creates a policy with the rules and a token with the policy,
// and returns the token's secret ID.
func (c *consulAgent) tokenWith(name, rules string) (string, error) {
	pol, _, err := c.api.ACL().PolicyCreate(&api.ACLPolicy{Name: name, Rules: rules}, nil)
	if err != nil {
		return "", fmt.Errorf("creating policy %s: %w", name, err)
	}
	tok, _, err := c.api.ACL().TokenCreate(&api.ACLToken{Policies: []*api.ACLTokenPolicyLink{{ID: pol.ID}}}, nil)
	if err != nil {
		return "", fmt.Errorf("creating a token with policy %s: %w", name, err)
	}
	return tok.SecretID, nil
}

// instance registers a service instance with the agent, at addr:port, with
// a TTL check that passes until told otherwise.
type consulInstance struct {
	id, service string
	addr        netip.Addr
	port        int
	tags        []string
	meta        map[string]string
	weight      int
}

func (in consulInstance) checkID() string { return in.id + "-ttl" }

func (c *consulAgent) register(t testing.TB, in consulInstance) {
	t.Helper()
	reg := &api.AgentServiceRegistration{
		ID: in.id, Name: in.service, Address: in.addr.String(), Port: in.port, Tags: in.tags, Meta: in.meta,
		Check: &api.AgentServiceCheck{CheckID: in.checkID(), TTL: "1h", Status: api.HealthPassing},
	}
	if in.weight > 0 {
		reg.Weights = &api.AgentWeights{Passing: in.weight, Warning: 1}
	}
	if err := c.api.Agent().ServiceRegister(reg); err != nil {
		t.Fatalf("registering %s: %v", in.id, err)
	}
}

func (c *consulAgent) deregister(t testing.TB, id string) {
	t.Helper()
	if err := c.api.Agent().ServiceDeregister(id); err != nil {
		t.Fatalf("deregistering %s: %v", id, err)
	}
}

// forget deregisters the instances that are still registered, at the end of
// a test.
func (c *consulAgent) forget(ids ...string) {
	for _, id := range ids {
		_ = c.api.Agent().ServiceDeregister(id)
	}
}

// ttl passes or fails the instance's TTL check.
func (c *consulAgent) ttl(t testing.TB, in consulInstance, pass bool) {
	t.Helper()
	status := api.HealthCritical
	if pass {
		status = api.HealthPassing
	}
	if err := c.api.Agent().UpdateTTL(in.checkID(), "set by the test", status); err != nil {
		t.Fatalf("updating the TTL check of %s: %v", in.id, err)
	}
}

// maintenance puts the instance into maintenance mode, or takes it out.
func (c *consulAgent) maintenance(t testing.TB, in consulInstance, on bool) {
	t.Helper()
	var err error
	if on {
		err = c.api.Agent().EnableServiceMaintenance(in.id, "test")
	} else {
		err = c.api.Agent().DisableServiceMaintenance(in.id)
	}
	if err != nil {
		t.Fatalf("maintenance %v of %s: %v", on, in.id, err)
	}
}

// consulProxy is a round-robin reverse_proxy over a consul dynamic source.
func consulProxy(source map[string]any) string {
	source["source"] = "consul"
	b, _ := json.Marshal(source)
	return fmt.Sprintf(`{"handler": "reverse_proxy", "load_balancing": {"selection_policy": {"policy": "round_robin"}}, "dynamic_upstreams": %s}`, b)
}

// consulApp is the consul app with the default server at the agent, read
// with the token (and with the token file, if given, instead).
func consulApp(port int, token, tokenFile string) string {
	srv := map[string]any{"addresses": []string{fmt.Sprintf("127.0.0.1:%d", port)}}
	switch {
	case tokenFile != "":
		srv["token_file"] = tokenFile
	case token != "":
		srv["token"] = token
	}
	b, _ := json.Marshal(map[string]any{"servers": map[string]any{"default": srv}})
	return `"consul": ` + string(b)
}

// app is the consul app reading the agent with its read token, if any.
func (c *consulAgent) app() string { return consulApp(c.port, c.readToken, "") }

// consulDump is the consul entries of the admin dump, by service name.
func consulDump() map[string]upstreams.DumpEntry {
	out := map[string]upstreams.DumpEntry{}
	for _, e := range upstreams.Dump() {
		if e.Source == "consul" {
			out[e.Service] = e
		}
	}
	return out
}

// expectConsul polls until the admin dump's one consul source lists exactly
// the given targets with their weights, and requests reach exactly the
// given backends; it returns how long that took.
func expectConsul(t *testing.T, cd *harness.Caddy, timeout time.Duration, name string, weights map[string]float64, backends ...string) time.Duration {
	t.Helper()
	start := time.Now()
	harness.Eventually(t, timeout, func() error {
		var got map[string]float64
		dump := consulDump()
		if len(dump) != 1 {
			return fmt.Errorf("%s: %d consul sources in the admin dump, want 1", name, len(dump))
		}
		for _, e := range dump {
			got = map[string]float64{}
			for _, u := range e.Upstreams {
				got[u.Dial] = u.Weight
			}
		}
		if !maps.Equal(got, weights) {
			return fmt.Errorf("%s: admin dump has targets %v, want %v", name, got, weights)
		}
		want := slices.Sorted(slices.Values(backends))
		if spread := cd.Spread(6 * max(len(backends), 1)); !slices.Equal(harness.Names(spread), want) {
			return fmt.Errorf("%s: requests reached %v, want exactly %v", name, spread, want)
		}
		return nil
	})
	took := time.Since(start)
	t.Logf("%-26s followed in %v", name, took.Round(time.Millisecond))
	return took
}

// expectConsulConnected polls until the connection conn is up
// (caddy_discovery_connected) and no consul source shows an error.
func expectConsulConnected(t *testing.T, timeout time.Duration, conn string) {
	t.Helper()
	harness.Eventually(t, timeout, func() error {
		if got := discoveryMetric(t, "caddy_discovery_connected", "connection", conn); got != 1 {
			return fmt.Errorf("caddy_discovery_connected = %v", got)
		}
		for _, e := range consulDump() {
			if e.Error != "" {
				return fmt.Errorf("the dump still has an error: %s", e.Error)
			}
		}
		return nil
	})
}

// expectConsulError polls until the one consul source's error in the admin
// dump contains every part.
func expectConsulError(t *testing.T, timeout time.Duration, parts ...string) string {
	t.Helper()
	var msg string
	harness.Eventually(t, timeout, func() error {
		dump := consulDump()
		if len(dump) != 1 {
			return fmt.Errorf("%d consul sources in the admin dump, want 1", len(dump))
		}
		for _, e := range dump {
			msg = e.Error
		}
		for _, p := range parts {
			if !strings.Contains(msg, p) {
				return fmt.Errorf("the dump's error %q does not contain %q", msg, p)
			}
		}
		return nil
	})
	return msg
}

// TestConsulFollowsChanges: register, deregister, a failing TTL check and
// maintenance mode each reach Caddy through the blocking query, well
// within a second: Caddy's long-poll waits up to a minute and re-reads
// nothing periodically, so only Consul answering it at the change explains
// that. Weights.Passing is the weight; one long-poll serves the source.
func TestConsulFollowsChanges(t *testing.T) {
	const within = time.Second
	c := sharedConsul(t)
	n := harness.NewNetns(t)
	a, b := n.AddAddr(t), n.AddAddr(t)
	n.Backend(t, "a", a, 8080)
	n.Backend(t, "b", b, 8080)
	ia := consulInstance{id: "follow-a", service: "follow", addr: a, port: 8080, weight: 3}
	ib := consulInstance{id: "follow-b", service: "follow", addr: b, port: 8080}
	dialA, dialB := netip.AddrPortFrom(a, 8080).String(), netip.AddrPortFrom(b, 8080).String()
	c.register(t, ia)
	t.Cleanup(func() { c.forget(ia.id, ib.id) })

	cd := harness.StartCaddy(t, consulCaddyPort, consulProxy(map[string]any{"service": "follow"}), c.app())
	expectConsul(t, cd, 10*time.Second, "first answer", map[string]float64{dialA: 3}, "a")
	conn := "default" // the server's name in the consul app
	restarts := discoveryMetric(t, "caddy_discovery_watch_restarts_total", "connection", conn)

	// the steps are a second apart: back to back, the rate limit (burst
	// 2, then a query a second) would batch them
	for _, step := range []struct {
		name     string
		do       func()
		weights  map[string]float64
		backends []string
	}{
		{"register b", func() { c.register(t, ib) }, map[string]float64{dialA: 3, dialB: 1}, []string{"a", "b"}},
		{"b's TTL check fails", func() { c.ttl(t, ib, false) }, map[string]float64{dialA: 3}, []string{"a"}},
		{"b's TTL check passes", func() { c.ttl(t, ib, true) }, map[string]float64{dialA: 3, dialB: 1}, []string{"a", "b"}},
		{"a into maintenance", func() { c.maintenance(t, ia, true) }, map[string]float64{dialB: 1}, []string{"b"}},
		{"a out of maintenance", func() { c.maintenance(t, ia, false) }, map[string]float64{dialA: 3, dialB: 1}, []string{"a", "b"}},
		{"deregister a", func() { c.deregister(t, ia.id) }, map[string]float64{dialB: 1}, []string{"b"}},
		{"register a, weight 5", func() { ia.weight = 5; c.register(t, ia) }, map[string]float64{dialA: 5, dialB: 1}, []string{"a", "b"}},
	} {
		time.Sleep(time.Second)
		step.do()
		expectConsul(t, cd, within, step.name, step.weights, step.backends...)
	}
	if got := discoveryMetric(t, "caddy_discovery_consul_long_polls", "connection", conn); got != 1 {
		t.Errorf("caddy_discovery_consul_long_polls = %v, want 1", got)
	}
	if got := discoveryMetric(t, "caddy_discovery_watch_restarts_total", "connection", conn); got != restarts {
		t.Errorf("the long-poll restarted %v times without an error", got-restarts)
	}
	if got := discoveryMetric(t, "caddy_discovery_connected", "connection", conn); got != 1 {
		t.Errorf("caddy_discovery_connected = %v, want 1", got)
	}
}

// TestConsulSelection: tags (all must match) and filter expressions select
// exactly their instances, as Consul evaluates them; a filter Consul
// rejects, an unknown service and an unknown datacenter are explained.
func TestConsulSelection(t *testing.T) {
	c := sharedConsul(t)
	n := harness.NewNetns(t)
	var ins []consulInstance
	for i, spec := range []struct {
		tags []string
		zone string
	}{{[]string{"v1"}, "a"}, {[]string{"v2"}, "b"}, {[]string{"v2", "canary"}, "a"}, {[]string{"v1", "canary"}, "b"}} {
		addr := n.AddAddr(t)
		name := fmt.Sprintf("i%d", i)
		n.Backend(t, name, addr, 8080)
		in := consulInstance{id: "sel-" + name, service: "sel", addr: addr, port: 8080, tags: spec.tags, meta: map[string]string{"zone": spec.zone}}
		c.register(t, in)
		ins = append(ins, in)
	}
	t.Cleanup(func() {
		for _, in := range ins {
			c.forget(in.id)
		}
	})
	cd := harness.StartCaddy(t, consulCaddyPort, consulProxy(map[string]any{"service": "sel"}), c.app())
	cd.ExpectBackends(t, 10*time.Second, "i0", "i1", "i2", "i3")
	for _, tc := range []struct {
		source map[string]any
		want   []string
	}{
		{map[string]any{"service": "sel", "tags": []string{"v2"}}, []string{"i1", "i2"}},
		{map[string]any{"service": "sel", "tags": []string{"canary", "v2"}}, []string{"i2"}},
		{map[string]any{"service": "sel", "filter": `Service.Meta.zone == "a"`}, []string{"i0", "i2"}},
		{map[string]any{"service": "sel", "tags": []string{"canary"}, "filter": `Service.Meta.zone == "b" and "v1" in Service.Tags`}, []string{"i3"}},
		{map[string]any{"service": "sel", "filter": `"canary" not in Service.Tags`}, []string{"i0", "i1"}},
	} {
		cd.Load(consulProxy(tc.source), c.app())
		cd.ExpectBackends(t, 10*time.Second, tc.want...)
	}

	where := fmt.Sprintf("consul server \"default\" at 127.0.0.1:%d", c.port)
	for _, tc := range []struct {
		source map[string]any
		parts  []string
	}{
		{map[string]any{"service": "sel", "filter": `Service.NoSuchField == "x"`},
			[]string{"filter: " + where + ` rejected the filter "Service.NoSuchField == \"x\""`, "NoSuchField"}},
		{map[string]any{"service": "nosuch"},
			[]string{where + `: service "nosuch" is not registered: the agent's datacenter has no instance of it`}},
		{map[string]any{"service": "sel", "datacenter": "dc9"},
			[]string{`datacenter: ` + where + ` knows no datacenter "dc9"`}},
		{map[string]any{"service": "sel", "tags": []string{"v3"}},
			[]string{`service "sel" has no passing instance (selecting tags v3): of 4 instances, 4 passing: no passing one has all the tags v3`}},
		{map[string]any{"service": "sel", "namespace": "team"},
			[]string{"namespace: " + where + " is Consul Community Edition, which has no namespaces"}},
	} {
		cd.Load(consulProxy(tc.source), c.app())
		msg := expectConsulError(t, 10*time.Second, tc.parts...)
		t.Logf("%v: %s", tc.source, msg)
	}
}

// TestConsulACL: against the agent with ACLs on (default deny), a token
// whose policy lacks the node rule, one Consul does not know, and no token
// at all are each refused with what to fix, never showing a token;
// rewriting the token file with a token that may read takes effect without
// a reload.
func TestConsulACL(t *testing.T) {
	c := sharedConsul(t)
	n := harness.NewNetns(t)
	a := n.AddAddr(t)
	n.Backend(t, "a", a, 8080)
	c.register(t, consulInstance{id: "acl-a", service: "acl", addr: a, port: 8080})
	t.Cleanup(func() { c.forget("acl-a") })

	// the service rule but no node rule: Consul filters the instances out
	// rather than refusing
	partial, err := c.tokenWith("acl-service-only", `service "acl" { policy = "read" }`)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "token")
	write := func(tok string) {
		tmp := file + ".new"
		if err := os.WriteFile(tmp, []byte(tok+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, file); err != nil {
			t.Fatal(err)
		}
	}
	write(partial)
	where := fmt.Sprintf("consul server \"default\" at 127.0.0.1:%d", c.port)
	logFile := filepath.Join(t.TempDir(), "caddy.log")
	cd := harness.StartCaddyLogged(t, consulCaddyPort, consulProxy(map[string]any{"service": "acl"}), consulApp(c.port, "", file), logFile)
	msg := expectConsulError(t, 10*time.Second, where+` hides the instances of service "acl" from the ACL token`,
		`give the token a policy with service "acl" { policy = "read" } and node_prefix "" { policy = "read" }`)
	t.Logf("service rule only: %s", msg)
	secrets := []string{partial, c.token, c.readToken}

	write("00000000-0000-0000-0000-000000000001") // no such token
	msg = expectConsulError(t, 10*time.Second, where+` rejected the ACL token querying service "acl": ACL not found: the token does not exist`)
	t.Logf("unknown token: %s", msg)

	good, err := c.tokenWith("acl-read", `service "acl" { policy = "read" }
node_prefix "" { policy = "read" }`)
	if err != nil {
		t.Fatal(err)
	}
	secrets = append(secrets, good)
	write(good)
	took := expectConsul(t, cd, 15*time.Second, "token file rotated", map[string]float64{netip.AddrPortFrom(a, 8080).String(): 1}, "a")
	t.Logf("the rotated token took effect in %v (the file is checked every 5 s)", took.Round(time.Millisecond))

	// no token: the anonymous token, which may read nothing
	cd.Load(consulProxy(map[string]any{"service": "acl"}), consulApp(c.port, "", ""))
	msg = expectConsulError(t, 10*time.Second, "no token is set", "set token or token_file")
	t.Logf("no token: %s", msg)

	logs := harness.ReadFile(logFile)
	if !strings.Contains(logs, "ACL not found") {
		t.Error("Caddy's log does not show the refusal")
	}
	for _, s := range secrets {
		for _, e := range upstreams.Dump() {
			if strings.Contains(fmt.Sprint(e), s) {
				t.Errorf("the admin dump shows a token: %+v", e)
			}
		}
		if strings.Contains(logs, s) {
			t.Error("Caddy's log shows a token")
		}
	}
}

// TestConsulReloadsKeepOneLongPoll: two routes asking the same question,
// through 20 config reloads, share one long-poll that is never restarted:
// a reload's new sources join the running long-poll before the old ones
// leave, and serve its list at once.
func TestConsulReloadsKeepOneLongPoll(t *testing.T) {
	losslessReloads(t) // a reload must not reset the requests checking it
	c := sharedConsul(t)
	n := harness.NewNetns(t)
	a, b := n.AddAddr(t), n.AddAddr(t)
	n.Backend(t, "a", a, 8080)
	n.Backend(t, "b", b, 8080)
	ia := consulInstance{id: "reload-a", service: "reload", addr: a, port: 8080}
	ib := consulInstance{id: "reload-b", service: "reload", addr: b, port: 8080}
	c.register(t, ia)
	t.Cleanup(func() { c.forget(ia.id, ib.id) })
	handler := func(i int) string {
		src := func() string { return consulProxy(map[string]any{"service": "reload", "tags": []string{}}) }
		return fmt.Sprintf(`{"handler": "subroute", "routes": [
			{"match": [{"path": ["/one/%d*"]}], "handle": [%s]},
			{"handle": [%s]}]}`, i, src(), src())
	}
	conn := "default" // the server's name in the consul app
	cd := harness.StartCaddy(t, consulCaddyPort, handler(0), c.app())
	cd.ExpectBackends(t, 10*time.Second, "a")
	restarts := discoveryMetric(t, "caddy_discovery_watch_restarts_total", "connection", conn)
	polls := discoveryMetric(t, "caddy_discovery_consul_long_polls", "connection", conn)
	if polls != 1 {
		t.Fatalf("two routes, one question: %v long-polls, want 1", polls)
	}
	for i := range 20 {
		cd.Load(handler(i+1), c.app())
		if spread := cd.Spread(4); !slices.Equal(harness.Names(spread), []string{"a"}) {
			t.Fatalf("right after reload %d: %v", i+1, spread)
		}
		if got := discoveryMetric(t, "caddy_discovery_consul_long_polls", "connection", conn); got != 1 {
			t.Fatalf("after reload %d: %v long-polls, want 1", i+1, got)
		}
	}
	if got := discoveryMetric(t, "caddy_discovery_watch_restarts_total", "connection", conn); got != restarts {
		t.Errorf("the long-poll restarted %v times across the reloads", got-restarts)
	}
	c.register(t, ib)
	start := time.Now()
	cd.ExpectBackends(t, time.Second, "a", "b")
	t.Logf("after 20 reloads, a registration followed in %v", time.Since(start).Round(time.Millisecond))
}

// TestConsulRestart: a Consul server (its catalog on disk, as in
// production) stopped for 3 s and started again while requests flow: every
// request to the instances, which stayed up, succeeds (the last known
// instances keep serving, and the error says why meanwhile), and the
// long-poll comes back by itself, counted as a restart, and follows changes
// again.
func TestConsulRestart(t *testing.T) {
	c := startConsul(t, 18530, false, true)
	n := harness.NewNetns(t)
	a, b, d := n.AddAddr(t), n.AddAddr(t), n.AddAddr(t)
	n.Backend(t, "a", a, 8080)
	n.Backend(t, "b", b, 8080)
	n.Backend(t, "d", d, 8080)
	ia := consulInstance{id: "restart-a", service: "restart", addr: a, port: 8080}
	ib := consulInstance{id: "restart-b", service: "restart", addr: b, port: 8080}
	id := consulInstance{id: "restart-d", service: "restart", addr: d, port: 8080}
	c.register(t, ia)
	c.register(t, ib)
	// The instances heartbeat their TTL checks, as services with TTL
	// checks do: an agent restores a TTL check's last reported state after
	// a restart (agent.loadCheckState), and marks one that never reported
	// critical "to avoid placing potentially unhealthy services into the
	// active pool" (agent.loadChecks, v1.14.8).
	beats, stopBeats, beating := c.api.Agent(), make(chan struct{}), make(chan struct{})
	go func() {
		defer close(beating)
		tick := time.NewTicker(500 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stopBeats:
				return
			case <-tick.C:
			}
			for _, in := range []consulInstance{ia, ib} {
				_ = beats.UpdateTTL(in.checkID(), "alive", api.HealthPassing) // fails while Consul is down
			}
		}
	}()
	t.Cleanup(func() { close(stopBeats); <-beating })
	conn := "default" // the server's name in the consul app
	cd := harness.StartCaddy(t, consulCaddyPort, consulProxy(map[string]any{"service": "restart"}), c.app())
	cd.ExpectBackends(t, 10*time.Second, "a", "b")
	restarts := discoveryMetric(t, "caddy_discovery_watch_restarts_total", "connection", conn)

	tr := startTraffic(t, cd, []string{"a", "b", "d"}, "")
	time.Sleep(500 * time.Millisecond)
	c.stop(t)
	msg := expectConsulError(t, 5*time.Second, fmt.Sprintf(`cannot reach consul server "default" at 127.0.0.1:%d`, c.port), "serving the last known instances meanwhile")
	t.Logf("while Consul is down: %s", msg)
	time.Sleep(3 * time.Second)
	c.start(t)
	expectConsulConnected(t, 30*time.Second, conn)
	c.register(t, id)
	cd.ExpectBackends(t, 2*time.Second, "a", "b", "d")
	total, failed, first := tr.outcome()
	t.Logf("%d requests during the restart, %d failed", total, failed)
	if failed > 0 {
		t.Errorf("%d requests failed, the first: %s", failed, first)
	}
	if got := discoveryMetric(t, "caddy_discovery_watch_restarts_total", "connection", conn); got < restarts+1 {
		t.Errorf("watch restarts %v, want at least %v", got, restarts+1)
	}
}

// TestConsulPropagation measures, over 20 changes (PROPAGATION_CHANGES;
// register, a TTL check failing and passing again, deregister), the time
// from the change call returning to the change being visible in requests,
// and Caddy's own share
// (blocking query answered to snapshot published). Changes are a second
// apart, so that the rate limit (burst 2, then one query a second) never
// holds one back. It fails if the own share is missing or its p99 exceeds
// 5 ms.
func TestConsulPropagation(t *testing.T) {
	c := sharedConsul(t)
	n := harness.NewNetns(t)
	a, b := n.AddAddr(t), n.AddAddr(t)
	n.Backend(t, "a", a, 8080)
	n.Backend(t, "b", b, 8080)
	ia := consulInstance{id: "prop-a", service: "prop", addr: a, port: 8080}
	ib := consulInstance{id: "prop-b", service: "prop", addr: b, port: 8080}
	c.register(t, ia)
	t.Cleanup(func() { c.forget(ia.id, ib.id) })
	conn := "default" // the server's name in the consul app
	cd := harness.StartCaddy(t, consulCaddyPort, consulProxy(map[string]any{"service": "prop"}), c.app())
	cd.ExpectBackends(t, 10*time.Second, "a")
	before := publishShareOf(t, "caddy_discovery_consul_publish_seconds", "connection", conn)

	total := followChanges(t, cd, propagationChanges(t, 20), "b", func(i int) bool {
		switch i % 4 {
		case 0:
			c.register(t, ib)
			return true
		case 1:
			c.ttl(t, ib, false)
		case 2:
			c.ttl(t, ib, true)
			return true
		case 3:
			c.deregister(t, ib.id)
		}
		return false
	})
	reportShare(t, "consul", total, before, "connection", conn)
}

// TestConsulValidateJSON runs `caddy validate`'s code path on consul JSON
// configs: bad input is refused with an error naming the field, good input
// passes without contacting Consul: every address is a listener that counts
// the connections it is offered, and must count none.
func TestConsulValidateJSON(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var contacts atomic.Int32
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			contacts.Add(1)
			c.Close()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		if n := contacts.Load(); n != 0 {
			t.Errorf("validate contacted Consul %d times; it must not touch the network", n)
		}
	})
	token := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(token, []byte("secret-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	for _, tc := range []struct {
		name, source, apps, wantErr string
	}{
		{"minimal", `"service": "web", "addresses": ["@ADDR@"]`, "", ""},
		{"everything", `"service": "web", "datacenter": "dc2", "tags": ["v2", "http"], "filter": "Service.Meta.zone == \"a\"", "namespace": "team", "partition": "eu", "addresses": ["@ADDR@"], "token_file": "@TOKEN@"`, "", ""},
		{"placeholders", `"service": "{env.CD_TEST_SERVICE}", "addresses": ["{env.CD_TEST_ADDR}"], "token": "{env.CD_TEST_TOKEN}"`, "", ""},
		{"named server", `"service": "web", "server": "dc2"`, `"consul": {"servers": {"dc2": {"addresses": ["@ADDR@"], "token": "{env.CD_TEST_TOKEN}"}}}`, ""},
		{"default server", `"service": "web"`, `"consul": {"servers": {"default": {"addresses": ["@ADDR@"]}}}`, ""},
		{"missing service", `"addresses": ["@ADDR@"]`, "", "service: required"},
		{"bad filter", `"service": "web", "filter": "Service.Port >", "addresses": ["@ADDR@"]`, "", `filter: "Service.Port >" is not a Consul filter expression`},
		{"bad datacenter", `"service": "web", "datacenter": "DC 1", "addresses": ["@ADDR@"]`, "", `datacenter: "DC 1" is not a Consul datacenter name`},
		{"empty tag", `"service": "web", "tags": [""], "addresses": ["@ADDR@"]`, "", `tags: "" is not a tag`},
		{"token and token_file", `"service": "web", "token": "secret", "token_file": "@TOKEN@", "addresses": ["@ADDR@"]`, "", "token and token_file are both set"},
		{"missing token_file", `"service": "web", "token_file": "/nonexistent/token", "addresses": ["@ADDR@"]`, "", "token_file: stat /nonexistent/token: no such file"},
		{"missing ca_file", `"service": "web", "ca_file": "/nonexistent/ca.pem", "addresses": ["@ADDR@"]`, "", "ca_file: open /nonexistent/ca.pem"},
		{"credentials in address", `"service": "web", "addresses": ["http://u:secret@@ADDR@"]`, "", `addresses: "http://REDACTED@`},
		{"unknown server", `"service": "web", "server": "dc3"`, `"consul": {"servers": {"dc2": {"addresses": ["@ADDR@"]}}}`, `server: "dc3" is not defined in the consul app; defined servers: [dc2]`},
		{"server and fields", `"service": "web", "server": "dc2", "addresses": ["@ADDR@"]`, `"consul": {"servers": {"dc2": {"addresses": ["@ADDR@"]}}}`, `server "dc2" is named and connection fields are set too`},
		{"bad app server", `"service": "web"`, `"consul": {"servers": {"dc2": {"cert_file": "/c.pem"}}}`, "servers: dc2: cert_file and key_file go together"},
		{"unknown field", `"service": "web", "passing_only": true`, "", `unknown field "passing_only"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("CD_TEST_SERVICE", "web")
			t.Setenv("CD_TEST_ADDR", addr)
			t.Setenv("CD_TEST_TOKEN", "secret")
			fill := strings.NewReplacer("@ADDR@", addr, "@TOKEN@", token)
			apps := ""
			if tc.apps != "" {
				apps = "," + fill.Replace(tc.apps)
			}
			cfg := fmt.Sprintf(`{"admin": {"disabled": true}, "apps": {"http": {"servers": {"s": {"listen": ["127.0.0.1:0"], "routes": [{"handle": [
				{"handler": "reverse_proxy", "dynamic_upstreams": {"source": "consul", %s}}]}]}}}%s}}`, fill.Replace(tc.source), apps)
			var c caddy.Config
			if err := caddy.StrictUnmarshalJSON([]byte(cfg), &c); err != nil {
				if tc.wantErr != "" && strings.Contains(err.Error(), tc.wantErr) {
					return
				}
				t.Fatal(err)
			}
			start := time.Now()
			err := caddy.Validate(&c)
			if took := time.Since(start); took > 5*time.Second {
				t.Errorf("validate took %v: it must not wait on Consul", took)
			}
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("validate: %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("validate error = %v, want it to contain %q", err, tc.wantErr)
			case err != nil && strings.Contains(err.Error(), "secret"):
				t.Fatalf("validate error shows a secret: %v", err)
			}
		})
	}
}

// TestConsulConnectionLimit: Caddy holds one HTTP connection per blocking
// query, and a Consul agent allows http_max_conns_per_client (default 200)
// per client address. Past it, the agent answers 429: Caddy says which
// agent setting to raise, and how many queries it holds, instead of a bare
// rate-limit error. The agent here allows 6 connections, and Caddy follows
// 10 services.
func TestConsulConnectionLimit(t *testing.T) {
	c := startAgent(t, &consulAgent{port: 18540, maxConns: 6})
	n := harness.NewNetns(t)
	a := n.AddAddr(t)
	n.Backend(t, "a", a, 8080)
	var routes []string
	for i := range 10 {
		in := consulInstance{id: fmt.Sprintf("lim-%d-1", i), service: fmt.Sprintf("lim-%d", i), addr: a, port: 8080}
		c.register(t, in)
		b, _ := json.Marshal(map[string]any{"source": "consul", "service": in.service})
		routes = append(routes, fmt.Sprintf(`{"match": [{"path": ["/%s"]}], "handle": [{"handler": "reverse_proxy", "dynamic_upstreams": %s}]}`, in.service, b))
	}
	logFile := filepath.Join(t.TempDir(), "caddy.log")
	harness.StartCaddyLogged(t, consulCaddyPort, fmt.Sprintf(`{"handler": "subroute", "routes": [%s]}`, strings.Join(routes, ",")), consulApp(c.port, "", ""), logFile)
	harness.Eventually(t, 15*time.Second, func() error {
		log := harness.ReadFile(logFile)
		if !strings.Contains(log, "the agent refused another connection from Caddy's address (429") ||
			!strings.Contains(log, "raise it in the agent's config, e.g. limits { http_max_conns_per_client = 1000 }") {
			return errors.New("Caddy's log does not name http_max_conns_per_client")
		}
		return nil
	})
}
