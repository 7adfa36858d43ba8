package upstreams

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/goleak"
	"go.uber.org/zap"
)

// fakeRegistry opens services for a perRequest: "known-*" answer with one
// target after delay, "gone-*" answer that the service does not exist,
// "slow-*" never answer. It counts the opens: what reaches the registry.
type fakeRegistry struct {
	delay time.Duration
	opens atomic.Int32
	mu    sync.Mutex
	live  map[string]bool // names opened and not yet released
}

func (f *fakeRegistry) open(src *Source, name string) (func(), error) {
	f.opens.Add(1)
	pub := src.Publish(zap.NewNop(), "fake", name)
	f.mu.Lock()
	f.live[name] = true
	f.mu.Unlock()
	src.OnCleanup(func() {
		f.mu.Lock()
		delete(f.live, name)
		f.mu.Unlock()
	})
	return func() { go f.answer(pub, name) }, nil
}

// answer is the fake registry's first answer about name.
func (f *fakeRegistry) answer(pub *Publisher, name string) {
	time.Sleep(f.delay)
	switch {
	case strings.HasPrefix(name, "known-"):
		pub.List([]Target{{Addr: netip.MustParseAddr("10.0.0.1"), Port: 80}}, nil)
	case strings.HasPrefix(name, "gone-"):
		pub.List(nil, Problem(KindNotFound, errors.New("no such service")))
	case strings.HasPrefix(name, "unmarked-"):
		pub.List(nil, Problem(KindNotSelected, errors.New("no instance has the tag")))
	case strings.HasPrefix(name, "down-"):
		pub.List(nil, Problem(KindNoBackends, errors.New("no passing instance")))
	}
}

func (f *fakeRegistry) liveCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.live)
}

// request is a request that chose name, as {svc} holds it.
func request(name string) *http.Request {
	repl := caddy.NewReplacer()
	repl.Set("svc", name)
	ctx := context.WithValue(context.Background(), caddy.ReplacerCtxKey, repl)
	ctx = context.WithValue(ctx, caddyhttp.VarsCtxKey, map[string]any{})
	return httptest.NewRequest(http.MethodGet, "/", nil).WithContext(ctx)
}

// status is what discovery_error would answer: the lookup's status, or "".
func status(r *http.Request) string {
	s, _ := caddyhttp.GetVar(r.Context(), DiscoveryStatusVar).(string)
	return s
}

func newPerRequest(t *testing.T, f *fakeRegistry, cfg PerRequest) *Source {
	t.Helper()
	if cfg.Allow == nil {
		cfg.Allow = []string{"known-*", "gone-*", "slow-*"}
	}
	if err := cfg.Validate(true); err != nil {
		t.Fatal(err)
	}
	var s Source
	if err := s.ServePerRequest("fake", "{svc}", cfg, func(name string) error {
		if strings.ToLower(name) != name {
			return errors.New("upper case")
		}
		return nil
	}, f.open); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Cleanup() })
	return &s
}

func TestPerRequestServesAndDenies(t *testing.T) {
	f := &fakeRegistry{live: map[string]bool{}, delay: 10 * time.Millisecond}
	s := newPerRequest(t, f, PerRequest{Deny: []string{"known-admin"}})
	r := request("known-a")
	ups, err := s.GetUpstreams(r)
	if err != nil || len(ups) != 1 || ups[0].Dial != "10.0.0.1:80" {
		t.Fatalf("first request: %v, %v", ups, err)
	}
	if _, err := s.GetUpstreams(request("known-a")); err != nil || f.opens.Load() != 1 {
		t.Fatalf("second request: %v; %d opens, want 1", err, f.opens.Load())
	}
	for name, want := range map[string]string{
		"known-admin":            "not allowed",
		"other":                  "not allowed",
		"Known-A":                "upper case",
		"known-a/../b":           "segment",
		"known-%2Fb":             "printable ASCII",
		"known-é":                "printable ASCII",
		strings.Repeat("a", 300): "at most 253",
		"":                       "empty name",
	} {
		r := request(name)
		_, err := s.GetUpstreams(r)
		if err == nil || !strings.Contains(err.Error(), want) || status(r) != "404" {
			t.Errorf("%q: %v (status %q), want %q and 404", name, err, status(r), want)
		}
	}
	if n := f.opens.Load(); n != 1 {
		t.Errorf("denied names reached the registry: %d opens, want 1", n)
	}
}

// TestPerRequestOptIn: a service none of whose instances bears the
// source's marks is denied like an unknown one (its existence is not
// revealed); one whose marked instances are down is known: no status of
// the lookup's, so the request gets reverse_proxy's 503.
func TestPerRequestOptIn(t *testing.T) {
	f := &fakeRegistry{live: map[string]bool{}}
	s := newPerRequest(t, f, PerRequest{Allow: []string{"*"}})
	for name, want := range map[string]string{"unmarked-a": "404", "down-a": "", "gone-a": "404"} {
		r := request(name)
		if _, err := s.GetUpstreams(r); err == nil || status(r) != want {
			t.Errorf("%s: %v, status %q, want %s", name, err, status(r), want)
		}
	}
}

func TestPerRequestUnknownIsRemembered(t *testing.T) {
	f := &fakeRegistry{live: map[string]bool{}}
	s := newPerRequest(t, f, PerRequest{UnknownTTL: caddy.Duration(time.Hour)})
	for i := range 5 {
		r := request("gone-x")
		if _, err := s.GetUpstreams(r); err == nil || status(r) != "404" || !strings.Contains(err.Error(), "unknown to the registry") {
			t.Fatalf("request %d: %v, status %q", i, err, status(r))
		}
	}
	if n := f.opens.Load(); n != 1 {
		t.Errorf("an unknown name reached the registry %d times, want once", n)
	}
	if n := f.liveCount(); n != 0 {
		t.Errorf("the unknown service is still followed (%d live)", n)
	}
}

func TestPerRequestOneLookupForConcurrentRequests(t *testing.T) {
	f := &fakeRegistry{live: map[string]bool{}, delay: 50 * time.Millisecond}
	s := newPerRequest(t, f, PerRequest{})
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for range 20 {
		wg.Go(func() {
			if _, err := s.GetUpstreams(request("known-b")); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := f.opens.Load(); n != 1 {
		t.Errorf("20 concurrent first requests made %d lookups, want 1", n)
	}
}

func TestPerRequestBounds(t *testing.T) {
	f := &fakeRegistry{live: map[string]bool{}}
	s := newPerRequest(t, f, PerRequest{MaxServices: 2, IdleTimeout: caddy.Duration(time.Hour), FirstAnswerTimeout: caddy.Duration(50 * time.Millisecond)})
	for _, name := range []string{"known-1", "known-2"} {
		if _, err := s.GetUpstreams(request(name)); err != nil {
			t.Fatal(err)
		}
	}
	r := request("known-3")
	if _, err := s.GetUpstreams(r); err == nil || status(r) != "503" || !strings.Contains(err.Error(), "max_services (2)") {
		t.Fatalf("over capacity: %v, status %q", err, status(r))
	}
	if ra, _ := caddyhttp.GetVar(r.Context(), RetryAfterVar).(string); ra == "" {
		t.Error("over capacity without Retry-After")
	}
	// Idle services make room.
	idle := time.Now().Add(-2 * time.Hour).UnixNano()
	for _, e := range *s.perRequest.entries.Load() {
		e.lastUse.Store(idle)
	}
	if _, err := s.GetUpstreams(request("known-3")); err != nil {
		t.Fatalf("after the others went idle: %v", err)
	}
	if n := f.liveCount(); n != 1 {
		t.Errorf("%d services followed, want 1 (the idle ones dropped)", n)
	}
	// A registry that does not answer: 504 within first_answer_timeout,
	// and the service keeps waiting for its answer.
	s2 := newPerRequest(t, f, PerRequest{FirstAnswerTimeout: caddy.Duration(50 * time.Millisecond)})
	r = request("slow-1")
	start := time.Now()
	if _, err := s2.GetUpstreams(r); err == nil || status(r) != "504" {
		t.Fatalf("no answer: %v, status %q", err, status(r))
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("504 after %v, want about 50ms", d)
	}
}

func TestPerRequestIdleEviction(t *testing.T) {
	f := &fakeRegistry{live: map[string]bool{}}
	s := newPerRequest(t, f, PerRequest{IdleTimeout: caddy.Duration(time.Second)})
	if _, err := s.GetUpstreams(request("known-idle")); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for f.liveCount() > 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if n := f.liveCount(); n != 0 {
		t.Fatalf("an idle service is still followed after %v", time.Second)
	}
	if _, err := s.GetUpstreams(request("known-idle")); err != nil || f.opens.Load() != 2 {
		t.Fatalf("after eviction: %v, %d opens, want 2", err, f.opens.Load())
	}
}

func TestPerRequestCleanupReleasesAll(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	f := &fakeRegistry{live: map[string]bool{}}
	var s Source
	cfg := PerRequest{Allow: []string{"*"}, FirstAnswerTimeout: caddy.Duration(20 * time.Millisecond)}
	if err := s.ServePerRequest("fake", "{svc}", cfg, func(string) error { return nil }, f.open); err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		_, _ = s.GetUpstreams(request(fmt.Sprintf("known-%d", i)))
	}
	_, _ = s.GetUpstreams(request("slow-x")) // its first lookup still waits
	if err := s.Cleanup(); err != nil {
		t.Fatal(err)
	}
	if n := f.liveCount(); n != 0 {
		t.Errorf("%d services still followed after cleanup", n)
	}
	time.Sleep(50 * time.Millisecond) // the fake registry's answers
}

func TestPerRequestValidate(t *testing.T) {
	for name, tc := range map[string]struct {
		p          PerRequest
		perRequest bool
		want       string
	}{
		"no allow":         {PerRequest{}, true, "allow: required"},
		"fixed service":    {PerRequest{MaxServices: 3}, false, "only apply to a service chosen per request"},
		"negative":         {PerRequest{Allow: []string{"*"}, MaxServices: -1}, true, "must not be negative"},
		"status":           {PerRequest{Allow: []string{"*"}, DeniedStatus: 200}, true, "denied_status: 200"},
		"bad glob":         {PerRequest{Allow: []string{"["}}, true, "is not a glob"},
		"bad regex":        {PerRequest{Allow: []string{"a("}, Regex: true}, true, "is not an RE2"},
		"empty deny":       {PerRequest{Allow: []string{"*"}, Deny: []string{""}}, true, "deny: empty pattern"},
		"fine":             {PerRequest{Allow: []string{"shop-*"}}, true, ""},
		"fixed, no fields": {PerRequest{}, false, ""},
	} {
		err := tc.p.Validate(tc.perRequest)
		if (tc.want == "") != (err == nil) || err != nil && !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", name, err, tc.want)
		}
	}
}

func TestPatterns(t *testing.T) {
	globs := PerRequest{Allow: []string{"shop-*", "team/*"}, Deny: []string{"shop-admin"}}
	regexes := PerRequest{Allow: []string{"shop-[a-z]+", "team/.*"}, Deny: []string{"shop-admin"}, Regex: true}
	for _, p := range []PerRequest{globs, regexes} {
		m, err := p.patterns()
		if err != nil {
			t.Fatal(err)
		}
		for name, want := range map[string]bool{"shop-cart": true, "shop-admin": false, "team/a": true, "shop": false, "xshop-cart": false, "shop-cartx/y": false} {
			if got := m.allows(name); got != want {
				t.Errorf("regex %v: allows(%q) = %v, want %v", p.Regex, name, got, want)
			}
		}
	}
}

func FuzzCheckRequestName(f *testing.F) {
	for _, s := range []string{"shop-cart", "..", "%2F", "a/b", "é", "a b"} {
		f.Add(s)
	}
	m, _ := PerRequest{Allow: []string{"shop-*"}}.patterns()
	f.Fuzz(func(t *testing.T, name string) {
		if CheckRequestName(name) != nil {
			return
		}
		if strings.Contains(name, "..") || strings.ContainsAny(name, "% \\\x00") || len(name) > maxNameLen {
			t.Fatalf("%q passed the check", name)
		}
		_ = m.allows(name)
	})
}

// BenchmarkPerRequest compares a warm service chosen per request (its name
// the value of one placeholder, as a path regexp's capture sets it) with a
// fixed service of the same backends: the cost of choosing per request.
//
//	go test -run '^$' -bench PerRequest -benchmem -count 5 ./upstreams/
func BenchmarkPerRequest(b *testing.B) {
	for _, n := range []int{1, 10, 100} {
		targets := make([]Target, n)
		for i := range targets {
			targets[i] = Target{Addr: netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}), Port: 8080, Weight: 1}
		}
		var fixed Source
		fixed.Publish(zap.NewNop(), "bench", "fixed").List(targets, nil)
		var chosen Source
		cfg := PerRequest{Allow: []string{"*"}}
		open := func(src *Source, name string) (func(), error) {
			src.Publish(zap.NewNop(), "bench", name).List(targets, nil)
			return func() {}, nil
		}
		if err := chosen.ServePerRequest("bench", "{http.regexp.svc.1}", cfg, func(string) error { return nil }, open); err != nil {
			b.Fatal(err)
		}
		repl := caddy.NewReplacer()
		repl.Set("http.regexp.svc.1", "shop-cart")
		req := httptest.NewRequest(http.MethodGet, "/shop-cart/", nil).WithContext(
			context.WithValue(context.WithValue(context.Background(), caddy.ReplacerCtxKey, repl), caddyhttp.VarsCtxKey, map[string]any{}))
		if _, err := chosen.GetUpstreams(req); err != nil { // the first lookup
			b.Fatal(err)
		}
		for _, s := range []struct {
			name string
			src  *Source
		}{{"per-request", &chosen}, {"fixed", &fixed}} {
			b.Run(fmt.Sprintf("backends=%d/%s", n, s.name), func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					if ups, err := s.src.GetUpstreams(req); err != nil || len(ups) != n {
						b.Fatalf("%d upstreams, %v", len(ups), err)
					}
				}
			})
		}
		_ = fixed.Cleanup()
		_ = chosen.Cleanup()
	}
}
