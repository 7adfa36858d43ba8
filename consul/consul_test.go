package consul

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/hashicorp/consul/api"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"github.com/caddy-discovery/caddy-discovery/upstreams"
	"github.com/caddy-discovery/caddy-discovery/upstreams/upstreamstest"
)

func TestMain(m *testing.M) {
	waitTime, requestGrace = 2*time.Second, time.Second
	retryMin, retryMax = 10*time.Millisecond, 50*time.Millisecond
	rateEvery = 10 * time.Millisecond
	tokenCheckInterval = 20 * time.Millisecond
	goleak.VerifyTestMain(m)
}

func TestNextIndex(t *testing.T) {
	for _, tc := range []struct{ prev, got, want uint64 }{
		{0, 5, 5}, // first answer
		{5, 5, 5}, // timed out, nothing changed
		{5, 9, 9}, // changed
		{9, 3, 0}, // went backwards (restore, restarted dev agent): start over with a full read
		{0, 0, 1}, // a zero index would not block
		{7, 0, 0}, // backwards to 0: full read first; its answer then gives at least 1
		{0, 1, 1}, // 1 always blocks
		{1, 1, 1}, // and stays
		{3, 4, 4}, // forward by one
		{^uint64(0), 2, 0},
	} {
		if got := nextIndex(tc.prev, tc.got); got != tc.want {
			t.Errorf("nextIndex(%d, %d) = %d, want %d", tc.prev, tc.got, got, tc.want)
		}
	}
}

func TestTargetsOf(t *testing.T) {
	withAddr := func(e *api.ServiceEntry, svcAddr, nodeAddr string) *api.ServiceEntry {
		e.Service.Address, e.Node.Address = svcAddr, nodeAddr
		return e
	}
	weighted := entry("web", "10.0.0.3", 80, api.HealthPassing)
	weighted.Service.Weights.Passing = 5
	multiPort := entry("web", "10.0.0.4", 80, api.HealthPassing)
	multiPort.Service.Ports = api.ServicePorts{{Name: "admin", Port: 9000}, {Name: "http", Port: 8080, Default: true}}
	noWeight := entry("web", "10.0.0.5", 80, api.HealthPassing)
	noWeight.Service.Weights = api.AgentWeights{}
	entries := []*api.ServiceEntry{
		entry("web", "10.0.0.1", 80, api.HealthPassing),
		withAddr(entry("web", "x", 81, api.HealthPassing), "", "10.0.0.2"), // node address, as Consul DNS
		weighted,
		multiPort,
		noWeight,
		withAddr(entry("web", "x", 80, api.HealthPassing), "[2001:db8::1]", ""),
		withAddr(entry("web", "x", 80, api.HealthPassing), "::ffff:10.0.0.6", ""),
		withAddr(entry("web", "x", 80, api.HealthPassing), "web.internal", "10.0.0.9"), // a host name is not used
		withAddr(entry("web", "x", 80, api.HealthPassing), "0.0.0.0", ""),
		withAddr(entry("web", "x", 80, api.HealthPassing), "fe80::1%eth0", ""),
		withAddr(entry("web", "x", 80, api.HealthPassing), "", ""),
		entry("web", "10.0.0.7", 0, api.HealthPassing),
		entry("web", "10.0.0.8", 70000, api.HealthPassing),
		nil,
		{Node: &api.Node{Address: "10.0.0.10"}},
	}
	got, skip := targetsOf(entries)
	var dials []string
	for _, tg := range got {
		dials = append(dials, fmt.Sprintf("%s w%g", tg.Dial(), tg.Weight))
	}
	want := []string{"10.0.0.1:80 w1", "10.0.0.2:81 w1", "10.0.0.3:80 w5", "10.0.0.4:8080 w1", "10.0.0.5:80 w1", "[2001:db8::1]:80 w1", "10.0.0.6:80 w1"}
	if !slices.Equal(dials, want) {
		t.Errorf("targets = %v, want %v", dials, want)
	}
	if skip.total != len(entries) || skip.badAddr != 8 || skip.example != "web.internal port 80" {
		t.Errorf("skipped = %+v, want 8 of %d, first web.internal", skip, len(entries))
	}
	if msg := skip.String(); !strings.Contains(msg, "8 have no address Caddy can dial") || !strings.Contains(msg, "not a host name") {
		t.Errorf("skipped message %q does not say what to fix", msg)
	}
}

// dispense parses a `dynamic consul` block.
func dispense(t *testing.T, body string) (*ConsulUpstreams, error) {
	t.Helper()
	u := new(ConsulUpstreams)
	// blocks written on one line, as "web { datacenter a }", get their
	// line breaks
	body = strings.ReplaceAll(strings.ReplaceAll(body, "{ ", "{\n"), " }", "\n}")
	err := u.UnmarshalCaddyfile(caddyfile.NewTestDispenser("consul " + body))
	return u, err
}

func TestCaddyfile(t *testing.T) {
	u, err := dispense(t, `web {
		datacenter dc2
		tags v2 canary v2
		filter `+"`"+`Service.Meta.version == "2"`+"`"+`
		namespace team-a
		partition eu
		addresses https://consul.internal:8501 10.0.0.1:8501
		token_file /run/consul/token
		ca_file /etc/consul/ca.pem
		cert_file /etc/consul/cert.pem
		key_file /etc/consul/key.pem
		tls_server_name server.dc1.consul
	}`)
	if err != nil {
		t.Fatal(err)
	}
	if u.Service != "web" || u.Datacenter != "dc2" || !slices.Equal(u.Tags, []string{"v2", "canary", "v2"}) || u.Filter != `Service.Meta.version == "2"` ||
		u.Namespace != "team-a" || u.Partition != "eu" || len(u.Addresses) != 2 || u.TokenFile != "/run/consul/token" || u.TLSServerName != "server.dc1.consul" {
		t.Errorf("parsed %+v", u)
	}
	q, err := u.query(nil)
	if err != nil || !slices.Equal(q.tags, []string{"canary", "v2"}) {
		t.Errorf("query = %+v, %v; want tags sorted without duplicates", q, err)
	}
	if n := q.name(); n != `team-a/eu:web@dc2 (tags canary,v2, filter "Service.Meta.version == \"2\"")` {
		t.Errorf("name = %s", n)
	}

	for name, tc := range map[string]struct{ body, err string }{
		"no service":      {``, "dynamic consul needs a service"},
		"two services":    {`a b`, "wrong argument count"},
		"bad service":     {`a/b`, `service: "a/b" is not a Consul service name`},
		"bad datacenter":  {`web { datacenter DC1 }`, `datacenter: "DC1" is not a Consul datacenter name`},
		"bad filter":      {"web { filter `Service.Port >` }", `filter: "Service.Port >" is not a Consul filter expression`},
		"unquoted filter": {`web { filter Service.Port == 80 }`, "filter takes one expression, not 3 arguments: quote it with backticks"},
		"bad namespace":   {`web { namespace -x }`, `namespace: "-x" is not a Consul namespace`},
		"bad partition":   {`web { partition a_b }`, `partition: "a_b" is not a Consul namespace or partition name`},
		"empty tag":       {`web { tags "" }`, `tags: "" is not a tag`},
		"unknown option":  {`web { passing }`, "unrecognized consul option 'passing'"},
		"duplicate": {`web { datacenter a
			datacenter b }`, "datacenter has already been specified"},
		"token twice": {`web { token a b }`, "token takes one argument, not 2"},
		"token and file": {`web { token x
			token_file /t }`, "token and token_file are both set; set only one"},
		"half client cert": {`web { cert_file /c }`, "cert_file and key_file go together"},
		"http with tls": {`web { addresses http://10.0.0.1:8500
			ca_file /ca }`, `addresses: "http://10.0.0.1:8500" is http:// but TLS is set`},
		"mixed schemes":      {`web { addresses http://a:8500 https://b:8501 }`, "use one scheme"},
		"credentials in URL": {`web { addresses http://user:secret@a:8500 }`, `"http://REDACTED@a:8500": only scheme, host, port and path are allowed`},
		"bad port":           {`web { addresses a:99999 }`, `port "99999" is not a number in 1-65535`},
		"bad scheme":         {`web { addresses unix:///run/consul.sock }`, "scheme must be http or https"},
		"server and fields": {`web { server prod
			addresses a:8500 }`, `server "prod" is named and connection fields are set too`},
		"bad server name":     {`web { server "a b" }`, `server: invalid server name "a b"`},
		"bad tls server name": {`web { tls_server_name "a b" }`, `tls_server_name: "a b" is not a host name`},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := dispense(t, tc.body)
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Fatalf("err = %v, want %q", err, tc.err)
			}
			if strings.Contains(err.Error(), "secret") {
				t.Errorf("the error shows the secret: %v", err)
			}
		})
	}

	// placeholders are checked once replaced, not at adapt time
	if _, err := dispense(t, `{env.SVC} {
		datacenter {env.DC}
		tags {env.TAG}
		filter {env.FILTER}
		token {env.CONSUL_HTTP_TOKEN}
	}`); err != nil {
		t.Errorf("placeholders: %v", err)
	}
}

func TestParseAddress(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"127.0.0.1", "127.0.0.1:8500"},
		{"consul.internal:8600", "consul.internal:8600"},
		{"[::1]:8500", "[::1]:8500"},
		{"::1", "[::1]:8500"},
		{"http://10.0.0.1", "10.0.0.1:80"},
		{"https://consul.internal", "https://consul.internal:443"},
		{"https://consul.internal:8501/consul/", "https://consul.internal:8501/consul"},
	} {
		a, err := parseAddress(tc.in)
		if err != nil || a.String() != tc.want {
			t.Errorf("parseAddress(%q) = %s, %v; want %s", tc.in, a, err, tc.want)
		}
	}
	for _, in := range []string{"", "a b", "a/b", "http://", "ftp://a", "http://a:0", "a:b:c"} {
		if _, err := parseAddress(in); err == nil {
			t.Errorf("parseAddress(%q) succeeded", in)
		}
	}
}

// testSource provisions a source with the given connection against app, and
// cleans it up at the end of the test.
func testSource(t *testing.T, app *App, u *ConsulUpstreams) *ConsulUpstreams {
	t.Helper()
	if err := u.Validate(); err != nil {
		t.Fatal(err)
	}
	if err := u.provision(caddy.Log(), app); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := u.Cleanup(); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	return u
}

func expectDials(t *testing.T, u *ConsulUpstreams, want ...string) {
	t.Helper()
	upstreamstest.Eventually(t, 5*time.Second, upstreamstest.ExpectDials(u, want...))
}

func expectErr(t *testing.T, u *ConsulUpstreams, want ...string) {
	t.Helper()
	upstreamstest.Eventually(t, 5*time.Second, func() error {
		err := u.Snapshot().Err()
		if err == nil {
			return errors.New("no error")
		}
		for _, w := range want {
			if !strings.Contains(err.Error(), w) {
				return fmt.Errorf("error %q does not contain %q", err, w)
			}
		}
		return nil
	})
}

// TestLongPollFollowsChanges: the source follows the service through
// blocking queries at the latest index, the first one without an index;
// passing instances only, with the tags asked for.
func TestLongPollFollowsChanges(t *testing.T) {
	f := newFakeConsul(t)
	f.set("web", entry("web", "10.0.0.1", 80, api.HealthPassing, "v1"))
	app := new(App)
	u := testSource(t, app, &ConsulUpstreams{Service: "web", Tags: []string{"v1"}, Server: Server{Addresses: []string{f.addr()}}})
	if _, err := u.GetUpstreams(nil); err == nil || !strings.Contains(err.Error(), "waiting for the first answer") {
		t.Errorf("before Start: %v, want waiting for the first answer", err)
	}
	if f.blocked() != 0 || len(f.requests()) != 0 {
		t.Fatal("Provision made a request")
	}
	_ = app.Start()
	expectDials(t, u, "10.0.0.1:80")
	if err := u.Snapshot().Err(); err != nil {
		t.Errorf("after the first answer: %v", err)
	}

	f.set("web", entry("web", "10.0.0.1", 80, api.HealthPassing, "v1"), entry("web", "10.0.0.2", 80, api.HealthPassing, "v1"),
		entry("web", "10.0.0.3", 80, api.HealthCritical, "v1"), entry("web", "10.0.0.4", 80, api.HealthPassing, "v2"))
	expectDials(t, u, "10.0.0.1:80", "10.0.0.2:80")
	f.set("web", entry("web", "10.0.0.2", 80, api.HealthPassing, "v1"))
	expectDials(t, u, "10.0.0.2:80")

	reqs := f.requests()
	if len(reqs) > 6 {
		t.Errorf("%d requests for 3 states: not blocking", len(reqs))
	}
	first := reqs[0].URL.Query()
	if first.Has("index") || first.Get("passing") != "1" || !slices.Equal(first["tag"], []string{"v1"}) {
		t.Errorf("first query %s: want no index, passing, tag v1", reqs[0].URL)
	}
	for _, r := range reqs[1:] {
		if idx := r.URL.Query().Get("index"); idx == "" || idx == "0" {
			t.Errorf("later query %s does not block", r.URL)
		}
	}
}

// TestIndexHandling: an index that goes backwards starts over with a full
// read (no index); an index of 0 becomes 1, which blocks.
func TestIndexHandling(t *testing.T) {
	f := newFakeConsul(t)
	f.set("web", entry("web", "10.0.0.1", 80, api.HealthPassing))
	app := new(App)
	u := testSource(t, app, &ConsulUpstreams{Service: "web", Server: Server{Addresses: []string{f.addr()}}})
	_ = app.Start()
	expectDials(t, u, "10.0.0.1:80")
	upstreamstest.Eventually(t, 5*time.Second, func() error {
		if f.blocked() != 1 {
			return errors.New("not blocked")
		}
		return nil
	})
	// the restarted dev agent: index 3 < 11, with other instances
	f.mu.Lock()
	f.forceIndex, f.forced = 3, true
	f.mu.Unlock()
	f.set("web", entry("web", "10.0.0.2", 80, api.HealthPassing))
	expectDials(t, u, "10.0.0.2:80")
	time.Sleep(50 * time.Millisecond)
	f.mu.Lock()
	f.forceIndex = 0 // a Consul bug the docs warn of
	f.mu.Unlock()
	time.Sleep(200 * time.Millisecond)
	var seen []string
	for _, r := range f.requests() {
		seen = append(seen, r.URL.Query().Get("index"))
	}
	// 11 blocks, is answered 3 (backwards): a full read; then 3 is "no
	// change" until the index is 0, which the loop turns into 1
	i := slices.Index(seen, "3")
	if i < 1 || seen[i-1] != "" {
		t.Errorf("indexes sent %v: want a full read (no index) right after the index went backwards", seen)
	}
	if !slices.Contains(seen, "1") {
		t.Errorf("indexes sent %v: want 1 after an answer at index 0", seen)
	}
	if n := len(seen); n > 40 {
		t.Errorf("%d queries in 200 ms: a busy loop", n)
	}
}

// TestRateLimit: a service whose index moves on every answer (churn, or a
// Consul bug) is queried at the rate limit, not in a busy loop.
func TestRateLimit(t *testing.T) {
	old := rateEvery
	rateEvery = 100 * time.Millisecond
	t.Cleanup(func() { rateEvery = old })
	f := newFakeConsul(t)
	f.set("web", entry("web", "10.0.0.1", 80, api.HealthPassing))
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
			}
			f.set("web", entry("web", "10.0.0.1", 80, api.HealthPassing))
			time.Sleep(time.Millisecond)
		}
	}()
	app := new(App)
	u := testSource(t, app, &ConsulUpstreams{Service: "web", Server: Server{Addresses: []string{f.addr()}}})
	_ = app.Start()
	time.Sleep(time.Second)
	close(stop)
	<-done
	expectDials(t, u, "10.0.0.1:80")
	// burst 2, then one per 100 ms: about 12 in 1 s
	if n := len(f.requests()); n > 15 || n < 8 {
		t.Errorf("%d queries in 1 s of churn, want about 12 (burst 2, then 10/s)", n)
	}
}

// TestSharedAcrossSources: sources asking the same question share one
// long-poll, kept while any of them remains (a reload); another question is
// another long-poll.
func TestSharedAcrossSources(t *testing.T) {
	f := newFakeConsul(t)
	f.set("web", entry("web", "10.0.0.1", 80, api.HealthPassing, "a", "b"))
	conn := Server{Addresses: []string{f.addr()}}
	app1 := new(App)
	u1 := &ConsulUpstreams{Service: "web", Tags: []string{"a", "b"}, Server: conn}
	if err := u1.provision(caddy.Log(), app1); err != nil {
		t.Fatal(err)
	}
	_ = app1.Start()
	expectDials(t, u1, "10.0.0.1:80")

	// the reload: the new config's sources come first, then the old goes
	app2 := new(App)
	u2 := testSource(t, app2, &ConsulUpstreams{Service: "web", Tags: []string{"b", "a", "a"}, Server: conn})
	u3 := testSource(t, app2, &ConsulUpstreams{Service: "web", Tags: []string{"b"}, Server: conn})
	if u2.longPoll != u1.longPoll || u3.longPoll == u1.longPoll {
		t.Fatal("same question, different long-polls; or different questions, one long-poll")
	}
	expectDials(t, u2, "10.0.0.1:80") // at once, from the running long-poll
	_ = app2.Start()
	if err := u1.Cleanup(); err != nil {
		t.Fatal(err)
	}
	f.set("web", entry("web", "10.0.0.2", 80, api.HealthPassing, "a", "b"))
	expectDials(t, u2, "10.0.0.2:80")
	expectDials(t, u3, "10.0.0.2:80")
	upstreamstest.Eventually(t, 5*time.Second, func() error {
		if n := f.blocked(); n != 2 {
			return fmt.Errorf("%d blocked queries, want 2", n)
		}
		return nil
	})
	if u2.longPoll.Ctx.Err() != nil {
		t.Error("the shared long-poll stopped with the old config")
	}
	if got := testGauge(t, "caddy_discovery_consul_long_polls", u2.longPoll.c.conn); got != 2 {
		t.Errorf("caddy_discovery_consul_long_polls = %v, want 2", got)
	}
}

func testGauge(t *testing.T, name, conn string) float64 {
	t.Helper()
	reg := prometheus.NewRegistry()
	if err := upstreams.RegisterMetrics(reg); err != nil {
		t.Fatal(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "connection" && l.GetValue() == conn {
					if m.GetGauge() != nil {
						return m.GetGauge().GetValue()
					}
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

// TestOutage: while Consul cannot be reached, the last known instances keep
// serving, with the connection's problem as the error; once it answers
// again the long-poll restarts with a full read, counted as a restart.
func TestOutage(t *testing.T) {
	f := newFakeConsul(t)
	f.set("web", entry("web", "10.0.0.1", 80, api.HealthPassing))
	app := new(App)
	u := testSource(t, app, &ConsulUpstreams{Service: "web", Server: Server{Addresses: []string{f.addr()}}})
	_ = app.Start()
	expectDials(t, u, "10.0.0.1:80")
	conn := u.longPoll.c.conn
	restarts := testGauge(t, "caddy_discovery_watch_restarts_total", conn)

	f.failNext(1000, 500, "rpc error making call: No cluster leader")
	f.set("web", entry("web", "10.0.0.2", 80, api.HealthPassing)) // wakes the long-poll
	expectErr(t, u, "the Consul servers have no leader", "serving the last known instances")
	if dials, _ := upstreamstest.Dials(u); !slices.Equal(dials, []string{"10.0.0.1:80"}) {
		t.Errorf("during the outage: %v, want the last known 10.0.0.1:80", dials)
	}
	n := len(f.requests())
	f.failNext(0, 0, "")
	expectDials(t, u, "10.0.0.2:80")
	if err := u.Snapshot().Err(); err != nil {
		t.Errorf("after the outage: %v", err)
	}
	if reqs := f.requests(); len(reqs) <= n {
		t.Fatal("no request after the outage")
	} else if idx := reqs[n].URL.Query().Get("index"); idx != "" {
		t.Errorf("first query after the outage has index %s, want a full read", idx)
	}
	if got := testGauge(t, "caddy_discovery_watch_restarts_total", conn); got != restarts+1 {
		t.Errorf("watch restarts %v, want %v", got, restarts+1)
	}

	// unreachable: the connection's problem, once; the last list stays
	f.srv.CloseClientConnections()
	addr := f.addr()
	f.srv.Close()
	expectErr(t, u, "cannot reach consul at "+addr, "connection refused", "check addresses", "serving the last known instances")
	if dials, _ := upstreamstest.Dials(u); !slices.Equal(dials, []string{"10.0.0.2:80"}) {
		t.Errorf("while unreachable: %v, want the last known 10.0.0.2:80", dials)
	}
}

// TestProbeLeavesHungServer: of two addresses, the active one stops
// answering (a hung process keeps its sockets open, so nothing fails). The
// long-poll would wait on it for its whole timeout; the probe notices within
// probeInterval + probeTimeout, reports the connection's problem, and moves
// the long-poll to the other address, which then serves changes.
func TestProbeLeavesHungServer(t *testing.T) {
	i, to, r := probeInterval, probeTimeout, probeRetry
	t.Cleanup(func() { probeInterval, probeTimeout, probeRetry = i, to, r }) // after the source's
	probeInterval, probeTimeout, probeRetry = 50*time.Millisecond, 100*time.Millisecond, 20*time.Millisecond
	f1, f2 := newFakeConsul(t), newFakeConsul(t)
	for _, f := range []*fakeConsul{f1, f2} {
		f.set("web", entry("web", "10.0.0.1", 80, api.HealthPassing))
	}
	app := new(App)
	u := testSource(t, app, &ConsulUpstreams{Service: "web", Server: Server{Addresses: []string{f1.addr(), f2.addr()}}})
	_ = app.Start()
	expectDials(t, u, "10.0.0.1:80")
	upstreamstest.Eventually(t, 5*time.Second, func() error {
		if f1.blocked() != 1 {
			return fmt.Errorf("%d long-polls waiting on the first address, want 1", f1.blocked())
		}
		return nil
	})
	for _, r := range f2.requests() {
		t.Fatalf("a request to the second address while the first answers: %s", r.URL)
	}

	f1.hang(true)
	t.Cleanup(func() { f1.hang(false) })
	start := time.Now()
	// Well within the long-poll's own timeout (3.1 s in these tests).
	upstreamstest.Eventually(t, time.Second, func() error {
		for _, r := range f2.requests() {
			if strings.HasPrefix(r.URL.Path, "/v1/health/service/web") {
				return nil
			}
		}
		return errors.New("no long-poll on the second address")
	})
	t.Logf("moved to the second address %v after the first hung", time.Since(start).Round(time.Millisecond))
	f2.set("web", entry("web", "10.0.0.2", 80, api.HealthPassing))
	expectDials(t, u, "10.0.0.2:80")
}

// TestDiagnosis: an empty answer is explained by what Consul holds.
func TestDiagnosis(t *testing.T) {
	f := newFakeConsul(t)
	app := new(App)
	conn := Server{Addresses: []string{f.addr()}}
	u := testSource(t, app, &ConsulUpstreams{Service: "web", Tags: []string{"v2"}, Server: conn})
	_ = app.Start()
	expectErr(t, u, `service "web" is not registered`, "the agent's datacenter has no instance of it", "consul catalog services")
	kinds := upstreams.ProblemKinds(u.Snapshot().Err())
	if !slices.Equal(kinds, []upstreams.ProblemKind{upstreams.KindNotFound}) {
		t.Errorf("kinds %v, want not_found", kinds)
	}

	mainted := entry("web", "10.0.0.3", 80, api.HealthPassing, "v2")
	mainted.Checks = append(mainted.Checks, &api.HealthCheck{CheckID: api.ServiceMaintPrefix + "web", Status: api.HealthCritical})
	f.set("web", entry("web", "10.0.0.1", 80, api.HealthCritical, "v2"), entry("web", "10.0.0.2", 80, api.HealthWarning, "v2"), mainted)
	expectErr(t, u, `service "web" has no passing instance (selecting tags v2): of 3 instances, 1 in maintenance, 1 critical, 1 warning: none passes`)
	f.set("web", entry("web", "10.0.0.1", 80, api.HealthPassing, "v1"))
	expectErr(t, u, "of 1 instances, 1 passing: no passing one has all the tags v2")
	if err := u.Snapshot().Err().Error(); strings.Contains(err, ";") {
		t.Errorf("the error has more than the reason: %s", err)
	}
	// no instance bears the tags: a service the source does not see (a
	// service chosen per request gets the denied status)
	if !slices.Equal(upstreams.ProblemKinds(u.Snapshot().Err()), []upstreams.ProblemKind{upstreams.KindNotSelected}) {
		t.Errorf("kinds %v, want not_selected", upstreams.ProblemKinds(u.Snapshot().Err()))
	}
	// one bears them but does not pass: a service without backends
	f.set("web", entry("web", "10.0.0.1", 80, api.HealthPassing, "v1"), entry("web", "10.0.0.2", 80, api.HealthCritical, "v2"))
	expectErr(t, u, "of 2 instances, 1 passing, 1 critical: no passing one has all the tags v2")
	if !slices.Equal(upstreams.ProblemKinds(u.Snapshot().Err()), []upstreams.ProblemKind{upstreams.KindNoBackends}) {
		t.Errorf("kinds %v, want no_backends", upstreams.ProblemKinds(u.Snapshot().Err()))
	}
	f.set("web", entry("web", "10.0.0.1", 80, api.HealthPassing, "v2"))
	expectDials(t, u, "10.0.0.1:80")

	// every passing instance registered with a host name
	host := entry("web", "x", 80, api.HealthPassing, "v2")
	host.Service.Address = "web-1.internal"
	f.set("web", host)
	expectErr(t, u, `of 1 passing instances, 1 have no address Caddy can dial (such as "web-1.internal port 80")`)
}

// TestACL: Consul's two answers to a token that may not read: 403 for a
// token it does not know, an answer filtered by ACLs for one whose policy
// lacks the rules; each says what to fix, never the token.
func TestACL(t *testing.T) {
	const secret = "0b3a4c9e-1111-2222-3333-444455556666"
	f := newFakeConsul(t)
	f.set("web", entry("web", "10.0.0.1", 80, api.HealthPassing), entry("web", "10.0.0.2", 80, api.HealthPassing))
	f.tokens = map[string]bool{"good": true}
	app := new(App)
	u := testSource(t, app, &ConsulUpstreams{Service: "web", Server: Server{Addresses: []string{f.addr()}, Token: secret}})
	anon := testSource(t, app, &ConsulUpstreams{Service: "web", Datacenter: "dc1", Server: Server{Addresses: []string{f.addr()}}})
	_ = app.Start()
	expectErr(t, u, `hides the instances of service "web" from the ACL token`,
		`give the token a policy with service "web" { policy = "read" } and node_prefix "" { policy = "read" }`)
	expectErr(t, anon, `its ACLs deny by default and no token is set, so Consul shows the anonymous token nothing`, "set token or token_file")
	if k := upstreams.ProblemKinds(u.Snapshot().Err()); !slices.Equal(k, []upstreams.ProblemKind{upstreams.KindForbidden}) {
		t.Errorf("kinds %v, want forbidden", k)
	}

	f.mu.Lock()
	f.known = map[string]bool{"good": true}
	f.mu.Unlock()
	f.set("web", entry("web", "10.0.0.1", 80, api.HealthPassing))
	expectErr(t, u, "rejected the ACL token", "ACL not found", "the token does not exist; check token or token_file")
	// the last list's reason (ACLs hid everything) stays, with the refusal
	if k := upstreams.ProblemKinds(u.Snapshot().Err()); !slices.Contains(k, upstreams.KindUnauthorized) {
		t.Errorf("kinds %v, want unauthorized among them", k)
	}
	for _, s := range []*ConsulUpstreams{u, anon} {
		if strings.Contains(s.Snapshot().Err().Error(), secret) {
			t.Errorf("the error shows the token: %v", s.Snapshot().Err())
		}
	}
	for _, e := range upstreams.Dump() {
		if strings.Contains(fmt.Sprint(e), secret) {
			t.Errorf("the admin dump shows the token: %+v", e)
		}
	}
}

// TestTokenFile: the token file is read again when it changes, and the
// ongoing long-poll restarts with the new token at once; the environment's
// CONSUL_HTTP_TOKEN and CONSUL_NAMESPACE never reach a request.
func TestTokenFile(t *testing.T) {
	t.Setenv("CONSUL_HTTP_TOKEN", "from-env")
	t.Setenv("CONSUL_NAMESPACE", "env-ns")
	t.Setenv("CONSUL_PARTITION", "env-ap")
	dir := t.TempDir()
	file := filepath.Join(dir, "token")
	if err := os.WriteFile(file, []byte("first\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	f := newFakeConsul(t)
	f.set("web", entry("web", "10.0.0.1", 80, api.HealthPassing))
	app := new(App)
	u := testSource(t, app, &ConsulUpstreams{Service: "web", Server: Server{Addresses: []string{f.addr()}, TokenFile: file}})
	plain := testSource(t, app, &ConsulUpstreams{Service: "web", Server: Server{Addresses: []string{f.addr()}, ClientTLS: upstreams.ClientTLS{TLS: false}}, Namespace: ""})
	_ = app.Start()
	expectDials(t, u, "10.0.0.1:80")
	expectDials(t, plain, "10.0.0.1:80")
	upstreamstest.Eventually(t, 5*time.Second, func() error {
		if n := f.blocked(); n != 2 {
			return fmt.Errorf("%d blocked, want 2", n)
		}
		return nil
	})
	// a new file, as an atomic rename
	tmp := filepath.Join(dir, "token.new")
	if err := os.WriteFile(tmp, []byte("second"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, file); err != nil {
		t.Fatal(err)
	}
	upstreamstest.Eventually(t, 5*time.Second, func() error {
		for _, r := range f.requests() {
			if r.Header.Get("X-Consul-Token") == "second" {
				return nil
			}
		}
		return errors.New("no request with the new token")
	})
	for _, r := range f.requests() {
		tok := r.Header.Get("X-Consul-Token")
		if tok != "first" && tok != "second" && tok != "" {
			t.Errorf("request with token %q", tok)
		}
		if q := r.URL.Query(); q.Has("ns") || q.Has("partition") {
			t.Errorf("request %s carries the environment's namespace or partition", r.URL)
		}
	}
	for _, r := range f.requests() {
		if r.Header.Get("X-Consul-Token") == "" {
			return // the source without a token sent none, not CONSUL_HTTP_TOKEN
		}
	}
	t.Error("no request without a token: CONSUL_HTTP_TOKEN was used")
}

// TestValidateDoesNoIO: provisioning reads files but starts nothing; a
// config that is never started (caddy validate) leaves no goroutine.
func TestValidateDoesNoIO(t *testing.T) {
	f := newFakeConsul(t)
	app := new(App)
	u := &ConsulUpstreams{Service: "web", Server: Server{Addresses: []string{f.addr()}}}
	if err := u.provision(caddy.Log(), app); err != nil {
		t.Fatal(err)
	}
	if err := u.Cleanup(); err != nil {
		t.Fatal(err)
	}
	if n := len(f.requests()); n != 0 {
		t.Errorf("%d requests without Start", n)
	}
	// files are checked when the config loads
	for name, tc := range map[string]struct {
		s   Server
		err string
	}{
		"token file": {Server{TokenFile: "/nonexistent/token"}, "token_file: stat /nonexistent/token: no such file"},
		"ca file":    {Server{ClientTLS: upstreams.ClientTLS{CAFile: "/nonexistent/ca.pem"}}, "ca_file: open /nonexistent/ca.pem"},
		"cert":       {Server{ClientTLS: upstreams.ClientTLS{CertFile: "/nonexistent/c.pem", KeyFile: "/nonexistent/k.pem"}}, "cert_file and key_file: open /nonexistent/c.pem"},
	} {
		u := &ConsulUpstreams{Service: "web", Server: tc.s}
		err := u.provision(caddy.Log(), new(App))
		if err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("%s: err = %v, want %q", name, err, tc.err)
		}
		_ = u.Cleanup()
	}
	// a named server that does not exist
	err := (&ConsulUpstreams{Service: "web", ServerName: "prod"}).provision(caddy.Log(), &App{upstreams.ServerApp[Server]{Servers: map[string]*Server{"dc2": {}}}})
	if err == nil || !strings.Contains(err.Error(), `server: "prod" is not defined in the consul app; defined servers: [dc2]`) {
		t.Errorf("undefined server: %v", err)
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// TestTransportCopiesOnlyToChange: a request that carries nothing to take
// away and gets nothing added goes on as it is (a blocking query would keep
// a copy for minutes); any other is copied, never changed in place.
func TestTransportCopiesOnlyToChange(t *testing.T) {
	var got *http.Request
	tr := &transport{next: roundTripFunc(func(r *http.Request) (*http.Response, error) { got = r; return nil, nil })}
	req := httptest.NewRequest(http.MethodGet, "http://consul:8500/v1/health/service/web?index=7&passing=1", nil)
	_, _ = tr.RoundTrip(req)
	if got != req {
		t.Error("a request with nothing to change was copied")
	}
	for name, r := range map[string]*http.Request{
		"env token":     httptest.NewRequest(http.MethodGet, "http://consul:8500/v1/health/service/web?index=7", nil),
		"env namespace": httptest.NewRequest(http.MethodGet, "http://consul:8500/v1/health/service/web?index=7&ns=env", nil),
		"scope":         httptest.NewRequest(http.MethodGet, "http://consul:8500/v1/health/service/web?index=7", nil).WithContext(withScope(context.Background(), scope{namespace: "shop"})),
	} {
		if name == "env token" {
			r.Header.Set("X-Consul-Token", "from-env")
		}
		before := r.URL.String()
		_, _ = tr.RoundTrip(r)
		if got == r || r.URL.String() != before || (name == "env token" && r.Header.Get("X-Consul-Token") == "") {
			t.Errorf("%s: the request was changed in place or not copied", name)
		}
		if got.Header.Get("X-Consul-Token") != "" || got.URL.Query().Get("ns") != map[string]string{"scope": "shop"}[name] {
			t.Errorf("%s: sent %s with token %q", name, got.URL, got.Header.Get("X-Consul-Token"))
		}
	}
}
