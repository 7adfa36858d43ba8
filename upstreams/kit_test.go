package upstreams

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"
)

// server is a connection of some app, as a registry package writes one.
type server struct{ Addr, Password string }

func (s server) IsSet() bool { return s != server{} }

func (s server) Expand(repl *caddy.Replacer) (server, error) {
	err := ExpandFields(repl, Field{Name: "addr", Value: &s.Addr}, Field{Name: "password", Value: &s.Password, Secret: true})
	return s, err
}

func (s server) Validate() error {
	if strings.Contains(s.Addr, " ") {
		return errors.New("addr: no spaces")
	}
	return nil
}

var testServers = Connections[server]{App: "reg", Kind: "server", Field: "server", Named: "reg server %q"}

func TestConnectionsResolve(t *testing.T) {
	t.Setenv("KIT_TEST_PW", "hunter2")
	named := map[string]*server{"default": {Addr: "d"}, "prod": {Addr: "p", Password: "{env.KIT_TEST_PW}"}, "bad": {Addr: "a b"}}
	for _, tc := range []struct {
		name    string
		inline  server
		want    string
		wantSrv server
		wantErr string
	}{
		{"prod", server{}, "prod", server{Addr: "p", Password: "hunter2"}, ""},
		{"", server{Addr: "mine"}, "", server{Addr: "mine"}, ""},
		{"", server{}, "default", server{Addr: "d"}, ""},
		{"dc3", server{}, "", server{}, `server: "dc3" is not defined in the reg app; defined servers: [bad default prod]`},
		{"bad", server{}, "", server{}, `reg server "bad": addr: no spaces`},
		{"", server{Addr: "{env.KIT_TEST_MISSING}"}, "", server{}, "addr: "}, // own fields: named by the field alone
	} {
		name, srv, err := testServers.Resolve(named, tc.name, tc.inline)
		if tc.wantErr != "" {
			if err == nil || !strings.HasPrefix(err.Error(), tc.wantErr) || strings.Contains(err.Error(), "hunter2") {
				t.Errorf("Resolve(%q, %+v) error = %v, want %q", tc.name, tc.inline, err, tc.wantErr)
			}
			continue
		}
		if err != nil || name != tc.want || srv != tc.wantSrv {
			t.Errorf("Resolve(%q, %+v) = %q, %+v, %v; want %q, %+v", tc.name, tc.inline, name, srv, err, tc.want, tc.wantSrv)
		}
	}
	if named["prod"].Password != "{env.KIT_TEST_PW}" {
		t.Error("Resolve replaced a placeholder in the app's own config")
	}
	ref := Connections[server]{App: "k8s", Kind: "cluster", Named: "cluster %q"}
	if _, _, err := ref.Resolve(map[string]*server{"east": {}}, "west", server{}); err == nil || err.Error() != `cluster "west" is not defined in the k8s app; defined clusters: [east]` {
		t.Errorf("a reference's undefined cluster: %v", err)
	}
	for _, tc := range []struct {
		name    string
		inline  server
		wantErr string
	}{
		{"", server{Addr: "x"}, ""},
		{"prod", server{}, ""},
		{"a b", server{}, `server: invalid server name "a b"`},
		{"prod", server{Addr: "x"}, `server "prod" is named and connection fields are set too`},
	} {
		err := testServers.CheckSource(tc.name, tc.inline)
		if (tc.wantErr == "") != (err == nil) || err != nil && !strings.HasPrefix(err.Error(), tc.wantErr) {
			t.Errorf("CheckSource(%q, %+v) = %v, want %q", tc.name, tc.inline, err, tc.wantErr)
		}
	}
}

func TestExpandList(t *testing.T) {
	t.Setenv("KIT_TEST_HOST", "10.0.0.1")
	orig := []string{"{env.KIT_TEST_HOST}:1", "b"}
	list := orig
	if err := ExpandList(caddy.NewReplacer(), "addresses", &list); err != nil || !slices.Equal(list, []string{"10.0.0.1:1", "b"}) {
		t.Fatalf("ExpandList = %v, %v", list, err)
	}
	if orig[0] != "{env.KIT_TEST_HOST}:1" {
		t.Error("ExpandList changed the config's own list")
	}
	list = []string{"{env.KIT_TEST_MISSING}"}
	if err := ExpandList(caddy.NewReplacer(), "addresses", &list); err == nil || !strings.HasPrefix(err.Error(), "addresses: ") {
		t.Errorf("unknown placeholder: %v", err)
	}
	list = []string{"http://nacos:pa{ss-w0rd}@10.0.0.1:8848"}
	if err := ExpandList(caddy.NewReplacer(), "addresses", &list); err == nil ||
		err.Error() != `addresses: "http://REDACTED@10.0.0.1:8848" holds a placeholder Caddy does not know (credentials not shown)` {
		t.Errorf("a placeholder in credentials: %v", err)
	}
}

// receiver records what a Fanout hands it.
type receiver struct {
	lists   []string
	trouble error
}

func (r *receiver) Receive(l string)  { r.lists = append(r.lists, l) }
func (r *receiver) Trouble(err error) { r.trouble = err }

func TestFanout(t *testing.T) {
	log := zap.NewNop()
	conn, own := NewCondition(log, "f", "r"), NewCondition(log, "f", "r")
	f := NewFanout[string](Pending(errors.New("waiting")), conn, own)
	a := new(receiver)
	f.Add(a)
	if a.trouble == nil || a.trouble.Error() != "waiting" || len(a.lists) != 0 {
		t.Fatalf("before the first list: %+v", a)
	}
	f.Set(own, errors.New("refused"))
	f.Set(conn, errors.New("unreachable"))
	if a.trouble.Error() != "unreachable" {
		t.Errorf("trouble %v, want the connection's problem first", a.trouble)
	}
	f.Set(conn, nil)
	f.List("one")
	if a.trouble.Error() != "refused" || !slices.Equal(a.lists, []string{"one"}) {
		t.Errorf("after the first list: %+v", a)
	}
	f.Set(own, nil)
	if a.trouble != nil {
		t.Errorf("trouble %v after every problem ended", a.trouble)
	}
	b := new(receiver) // a reload's new source gets the current state at once
	f.Add(b)
	if b.trouble != nil || !slices.Equal(b.lists, []string{"one"}) {
		t.Errorf("a later receiver: %+v", b)
	}
	f.Remove(a)
	f.List("two")
	f.Relist()
	if !slices.Equal(a.lists, []string{"one"}) || !slices.Equal(b.lists, []string{"one", "two", "two"}) {
		t.Errorf("after Remove: a %v, b %v", a.lists, b.lists)
	}
	if l, ok := f.Last(); !ok || l != "two" {
		t.Errorf("Last = %q, %v", l, ok)
	}
}

// pooled is a pooled value that counts its Destruct.
type pooled struct {
	name string
	gone *[]string
}

func (p *pooled) Destruct() error {
	*p.gone = append(*p.gone, p.name)
	return nil
}

func TestSourceLease(t *testing.T) {
	var gone []string
	created := 0
	acquire := func(s *Source, key string) *pooled {
		t.Helper()
		p, err := Acquire(s, "kit-test/"+key, func() (*pooled, error) {
			created++
			return &pooled{name: key, gone: &gone}, nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	var old, next Source
	if _, err := old.GetUpstreams(nil); err == nil {
		t.Error("an unprovisioned source serves")
	}
	c, w := acquire(&old, "client"), acquire(&old, "client/watch")
	pub := old.Publish(zap.NewNop(), "kit", "svc")
	left := false
	old.OnCleanup(func() { left = true })
	// a reload: the new config's source finds both before the old one goes
	if acquire(&next, "client") != c || acquire(&next, "client/watch") != w || created != 2 {
		t.Fatalf("a reload made new values: %d created", created)
	}
	pub.List([]Target{{Port: 80}}, nil)
	if s := old.Snapshot(); s == nil || s.Len() != 1 {
		t.Errorf("snapshot %v", s)
	}
	if err := old.Cleanup(); err != nil || !left || len(gone) != 0 {
		t.Fatalf("old cleanup: %v, left %v, destructed %v", err, left, gone)
	}
	if err := next.Cleanup(); err != nil || !slices.Equal(gone, []string{"client/watch", "client"}) {
		t.Fatalf("last cleanup: %v, destructed %v; want the watch, then its client", err, gone)
	}
	if err := next.Cleanup(); err != nil {
		t.Errorf("a second Cleanup: %v", err)
	}
}

func TestRunner(t *testing.T) {
	var r Runner
	r.Init()
	var runs atomic.Int32
	loop := func() {
		runs.Add(1)
		<-r.Ctx.Done()
	}
	r.Start(loop, loop)
	r.Start(loop) // an app's Start after a reload: already running
	time.Sleep(10 * time.Millisecond)
	r.Stop()
	if n := runs.Load(); n != 2 {
		t.Errorf("%d goroutines ran, want 2", n)
	}
	var stopped Runner
	stopped.Init()
	stopped.Stop() // the last user left before the config started
	stopped.Start(func() { t.Error("started after Stop") })
	stopped.Wait()
}

func TestMembers(t *testing.T) {
	var m Members[int]
	for i := range 5 {
		m.Add(i)
	}
	m.Remove(3)
	var got []int
	n := m.Each(func(i int) bool { return i%2 == 0 }, func(i int) {
		got = append(got, i)
		m.Remove(i) // f may change the set
	})
	slices.Sort(got)
	if n != 3 || !slices.Equal(got, []int{0, 2, 4}) || m.Len() != 1 {
		t.Errorf("Each = %d %v, %d left", n, got, m.Len())
	}
}

func TestFingerprint(t *testing.T) {
	a, b := Fingerprint("10.0.0.1:8500", "s3cret"), Fingerprint("10.0.0.1:8500", "other")
	if a == b || a != Fingerprint("10.0.0.1:8500", "s3cret") || strings.Contains(a, "s3cret") {
		t.Errorf("fingerprints %q %q", a, b)
	}
	if Fingerprint("ab", "c") == Fingerprint("a", "bc") {
		t.Error("parts run together")
	}
}

func TestClientTLS(t *testing.T) {
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(notPEM, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	for files, want := range map[ClientTLS]string{
		{CAFile: filepath.Join(dir, "missing.pem")}: "ca_file: open ",
		{CAFile: notPEM}:                     "ca_file: " + notPEM + " holds no PEM certificate",
		{CertFile: notPEM, KeyFile: notPEM}:  "cert_file and key_file: ",
		{TLSServerName: "server.dc1.consul"}: "",
	} {
		cfg, err := files.Config()
		switch {
		case want == "" && (err != nil || cfg.ServerName != files.TLSServerName || cfg.InsecureSkipVerify):
			t.Errorf("%+v: %v", files, err)
		case want != "" && (err == nil || !strings.HasPrefix(err.Error(), want)):
			t.Errorf("%+v: error %v, want %q", files, err, want)
		}
	}
}

// TestExpandFieldsHidesSecrets: an unknown placeholder in a secret field
// (a password with braces in it) is refused without showing any of it,
// and escaped braces are taken literally; other fields name the
// placeholder.
func TestExpandFieldsHidesSecrets(t *testing.T) {
	repl := caddy.NewReplacer()
	password := "pa{ss-w0rd}x"
	err := ExpandFields(repl, Field{Name: "password", Value: &password, Secret: true})
	if err == nil || !strings.HasPrefix(err.Error(), "password: holds a placeholder Caddy does not know") || strings.Contains(err.Error(), "ss-w0rd") {
		t.Errorf("secret field: %v", err)
	}
	escaped := `pa\{ss-w0rd\}x`
	if err := ExpandFields(repl, Field{Name: "password", Value: &escaped, Secret: true}); err != nil || escaped != "pa{ss-w0rd}x" {
		t.Errorf("escaped braces: %q, %v", escaped, err)
	}
	addr := "10.0.0.1:{port}"
	if err := ExpandFields(repl, Field{Name: "addr", Value: &addr}); err == nil || err.Error() != "addr: unrecognized placeholder {port}" {
		t.Errorf("plain field: %v", err)
	}
}
