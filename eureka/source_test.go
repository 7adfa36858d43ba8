package eureka

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"go.uber.org/goleak"

	"github.com/caddy-discovery/caddy-discovery/upstreams"
	"github.com/caddy-discovery/caddy-discovery/upstreams/upstreamstest"
)

func TestTargets(t *testing.T) {
	up := func(ip string, mod ...func(*Instance)) Instance {
		in := Instance{ID: ip, App: "WEB", IPAddr: ip, Status: StatusUp, Port: Port{Number: 8080, Enabled: true},
			SecurePort: Port{Number: 8443}, Metadata: map[string]string{"zone": "east"}}
		for _, m := range mod {
			m(&in)
		}
		return in
	}
	list := []Instance{
		up("10.0.0.1"),
		up("10.0.0.2", func(in *Instance) { in.Status = StatusDown }),
		up("10.0.0.3", func(in *Instance) { in.Status = StatusOutOfService }),
		up("10.0.0.4", func(in *Instance) { in.Metadata = map[string]string{"zone": "west"} }),
		up("10.0.0.5", func(in *Instance) { in.Port.Enabled = false; in.SecurePort.Enabled = true }),
		up("web-6.example", func(in *Instance) { in.HostName = "web-6.example" }), // a host name, no IP
		up("0.0.0.0"),
		up("fe80::1%eth0"),
		up("::ffff:10.0.0.9"),
		up("10.0.0.10", func(in *Instance) { in.Port.Number = 0 }),
	}
	for _, tc := range []struct {
		name  string
		sel   selection
		dials []string
		skip  skipped
	}{
		{"port", selection{}, []string{"10.0.0.1:8080", "10.0.0.4:8080", "10.0.0.9:8080"},
			skipped{total: 10, notUp: 2, noPort: 2, badAddr: 3, marked: 10}},
		{"metadata", selection{metadata: map[string]string{"zone": "east"}}, []string{"10.0.0.1:8080", "10.0.0.9:8080"},
			skipped{total: 10, notUp: 2, metadata: 1, noPort: 2, badAddr: 3, marked: 9}},
		{"secure port", selection{secure: true}, []string{"10.0.0.5:8443"},
			skipped{total: 10, notUp: 2, noPort: 7, marked: 10}},
	} {
		targets, skip := tc.sel.targets(list)
		var dials []string
		for _, tg := range targets {
			dials = append(dials, tg.Dial())
			if tg.Weight != 1 {
				t.Errorf("%s: %s weighs %v, want 1", tc.name, tg.Dial(), tg.Weight)
			}
		}
		if strings.Join(dials, " ") != strings.Join(tc.dials, " ") {
			t.Errorf("%s: targets %v, want %v", tc.name, dials, tc.dials)
		}
		if skip != tc.skip {
			t.Errorf("%s: skipped %+v, want %+v", tc.name, skip, tc.skip)
		}
	}
	if _, err := netip.ParseAddr("10.0.0.1"); err != nil {
		t.Fatal(err)
	}
}

// TestSourceFollowsRegistry runs two sources of one application through a
// shared poller against a fake Eureka server (logic only; the real server is
// in integration/eureka_test.go): they follow registrations, status changes
// and removals, say why when there is nothing, keep the last instances
// through failures, and stop polling with the last of them, leaking nothing.
func TestSourceFollowsRegistry(t *testing.T) {
	ignore := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, ignore) }) // after the fake server closes
	f := newFakeEureka(t)
	f.set("WEB", fakeInstance{id: "a", ip: "10.0.0.1", port: 8080, status: StatusUp})
	conn := Server{URLs: []string{f.base()}, RefreshInterval: caddy.Duration(100 * time.Millisecond), Timeout: caddy.Duration(time.Second)}
	app := new(App)
	a := &EurekaUpstreams{App: "web", Server: conn}
	b := &EurekaUpstreams{App: "WEB", Server: conn}
	for _, u := range []*EurekaUpstreams{a, b} {
		if err := u.Validate(); err != nil {
			t.Fatal(err)
		}
		if err := u.provision(caddy.Log(), app); err != nil {
			t.Fatal(err)
		}
	}
	if a.feed != b.feed {
		t.Fatalf("two sources of one connection have two pollers: %p, %p", a.feed, b.feed)
	}
	if _, err := a.GetUpstreams(nil); err == nil || !strings.Contains(err.Error(), "waiting for the first answer") {
		t.Fatalf("before start: %v", err)
	}
	_ = app.Start()
	for _, u := range []*EurekaUpstreams{a, b} {
		upstreamstest.Eventually(t, 5*time.Second, upstreamstest.ExpectDials(u, "10.0.0.1:8080"))
	}
	f.set("WEB", fakeInstance{id: "b", ip: "10.0.0.2", port: 8080, status: StatusUp})
	upstreamstest.Eventually(t, 5*time.Second, upstreamstest.ExpectDials(a, "10.0.0.1:8080", "10.0.0.2:8080"))
	f.set("WEB", fakeInstance{id: "a", ip: "10.0.0.1", port: 8080, status: StatusOutOfService})
	upstreamstest.Eventually(t, 5*time.Second, upstreamstest.ExpectDials(a, "10.0.0.2:8080"))

	// a failing server: the last instances stay, with the problem
	f.mu.Lock()
	f.status["/eureka/apps/delta"], f.status["/eureka/apps"] = 503, 503
	f.mu.Unlock()
	upstreamstest.Eventually(t, 5*time.Second, func() error {
		s := a.Snapshot()
		if err := s.Err(); err == nil || !strings.Contains(err.Error(), "503") || s.Len() != 1 {
			return errors.New("want the last instance and the 503: " + strings.Join(s.Dials(), ",") + " " + errString(err))
		}
		return nil
	})
	f.mu.Lock()
	delete(f.status, "/eureka/apps/delta")
	delete(f.status, "/eureka/apps")
	f.mu.Unlock()
	f.remove("WEB", "b")
	f.remove("WEB", "a")
	upstreamstest.Eventually(t, 5*time.Second, func() error {
		_, err := b.GetUpstreams(nil)
		if err == nil || !strings.Contains(err.Error(), "application WEB has no instances in the registry") {
			return errors.New("want the missing application: " + errString(err))
		}
		if kinds := upstreams.ProblemKinds(err); len(kinds) != 1 || kinds[0] != upstreams.KindNotFound {
			return errors.New("want kind not_found")
		}
		return nil
	})
	for _, u := range []*EurekaUpstreams{a, b} {
		if err := u.Cleanup(); err != nil {
			t.Fatal(err)
		}
	}
	fulls, deltas := f.counts()
	time.Sleep(300 * time.Millisecond)
	if f2, d2 := f.counts(); f2 != fulls || d2 != deltas {
		t.Errorf("still polling after the last Cleanup: %d/%d -> %d/%d", fulls, deltas, f2, d2)
	}
}

func errString(err error) string {
	if err == nil {
		return "<nil>"
	}
	return err.Error()
}

func TestValidateNamesTheField(t *testing.T) {
	for _, tc := range []struct {
		u    EurekaUpstreams
		want string
	}{
		{EurekaUpstreams{}, "app: required"},
		{EurekaUpstreams{App: "a b"}, "app: "},
		{EurekaUpstreams{App: "WEB", Metadata: map[string]string{"": "x"}}, "metadata: empty key"},
		{EurekaUpstreams{App: "WEB", ServerName: "pr od"}, "server: invalid server name"},
		{EurekaUpstreams{App: "WEB", ServerName: "prod", Server: Server{URLs: []string{"http://e/eureka"}}}, `server "prod" is named and connection fields are set too`},
		{EurekaUpstreams{App: "WEB", Server: Server{URLs: []string{"http://user:s3cret@e/eureka"}}}, "urls: server http://REDACTED@e/eureka holds credentials"},
		{EurekaUpstreams{App: "WEB", Server: Server{URLs: []string{"ftp://e"}}}, "urls: "},
		{EurekaUpstreams{App: "WEB", Server: Server{Username: "a:b"}}, "username: "},
		{EurekaUpstreams{App: "WEB", Server: Server{RefreshInterval: caddy.Duration(time.Millisecond)}}, "refresh_interval: "},
		{EurekaUpstreams{App: "WEB", Server: Server{Timeout: -1}}, "timeout: "},
		{EurekaUpstreams{App: "{env.APP}", Server: Server{URLs: []string{"{env.EUREKA_URL}"}}}, ""},
	} {
		err := tc.u.Validate()
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%+v: %v", tc.u, err)
		case tc.want != "" && (err == nil || !strings.HasPrefix(err.Error(), tc.want)):
			t.Errorf("%+v: err = %v, want prefix %q", tc.u, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), "s3cret") {
			t.Errorf("error shows the password: %v", err)
		}
	}
}

func TestCaddyfile(t *testing.T) {
	for in, want := range map[string]string{
		`eureka web { metadata zone east
			secure_port
			urls http://10.0.0.1:8761/eureka http://10.0.0.2:8761/eureka
			username u
			password {env.P}
			refresh_interval 2s
		}`: "",
		`eureka`:                                        "needs an application name",
		`eureka a b`:                                    "wrong argument count",
		"eureka web {\n weight 1\n}":                    "unrecognized eureka option 'weight'",
		"eureka web {\n metadata a\n}":                  "metadata takes a key and a value",
		"eureka web {\n password a b\n}":                "password",
		"eureka web {\n urls ftp://x/eureka\n}":         "urls: ",
		"eureka web {\n server a b\n}":                  "wrong argument count",
		"eureka web {\n metadata a 1\n metadata a 2\n}": `metadata "a" has already been specified`,
	} {
		u := new(EurekaUpstreams)
		err := u.UnmarshalCaddyfile(caddyfile.NewTestDispenser(in))
		switch {
		case want == "" && err != nil:
			t.Errorf("%q: %v", in, err)
		case want != "" && (err == nil || !strings.Contains(err.Error(), want)):
			t.Errorf("%q: err = %v, want %q", in, err, want)
		}
	}
}
