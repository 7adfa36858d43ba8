package selection

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"unsafe"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"
	_ "github.com/caddyserver/caddy/v2/modules/standard"

	"github.com/caddy-discovery/caddy-discovery/upstreams"
)

// service is a registered source cell listing 10.6.<net>.<i+1>:80 with the
// given weights, as a registry source would publish them.
type service struct {
	cell  upstreams.Cell
	net   byte
	dials []string
}

var nextNet atomic.Int32

// publish registers a service of len(weights) addresses in a subnet of its
// own, unregistered when the test ends.
func publish(t testing.TB, weights ...float64) *service {
	t.Helper()
	s := &service{net: byte(nextNet.Add(1))}
	s.set(weights...)
	t.Cleanup(upstreams.Register("test", fmt.Sprint("svc", s.net), &s.cell))
	return s
}

// set publishes new weights for the service's addresses.
func (s *service) set(weights ...float64) {
	var ts []upstreams.Target
	s.dials = s.dials[:0]
	for i, w := range weights {
		ts = append(ts, upstreams.Target{Addr: netip.AddrFrom4([4]byte{10, 6, s.net, byte(i + 1)}), Port: 80, Weight: w})
	}
	snap := upstreams.NewSnapshot(ts, nil)
	s.dials = append(s.dials, snap.Dials()...)
	s.cell.Store(snap)
}

// pool returns fresh upstreams for dials, as GetUpstreams does per request.
func pool(dials ...string) reverseproxy.UpstreamPool {
	p := make(reverseproxy.UpstreamPool, len(dials))
	for i, d := range dials {
		p[i] = &reverseproxy.Upstream{Host: new(reverseproxy.Host), Dial: d}
	}
	return p
}

// setAvailable marks u down or up as Caddy's active health checker does.
// Caddy exports no way to do that, so it writes Upstream's unexported
// "unhealthy" field (what Upstream.Available reads).
func setAvailable(t testing.TB, u *reverseproxy.Upstream, up bool) {
	t.Helper()
	f := reflect.ValueOf(u).Elem().FieldByName("unhealthy")
	if !f.IsValid() || f.Type() != reflect.TypeFor[atomic.Int32]() {
		t.Fatal("reverseproxy.Upstream has no field unhealthy of type atomic.Int32 any more; update setAvailable")
	}
	v := int32(1)
	if up {
		v = 0
	}
	(*atomic.Int32)(unsafe.Pointer(f.UnsafeAddr())).Store(v)
	if u.Available() != up {
		t.Fatalf("could not mark %s available=%v", u.Dial, up)
	}
}

// picks selects n times from p and returns the index in p of each pick
// (-1 for none).
func picks(s *RegistryWeightedSelection, p reverseproxy.UpstreamPool, n int) []int {
	out := make([]int, n)
	for k := range out {
		out[k] = -1
		got := s.Select(p, nil, nil)
		for i, u := range p {
			if u == got {
				out[k] = i
			}
		}
	}
	return out
}

// expectWindows checks that every len(seq) window of sum(want) consecutive
// picks holds want[i] picks of upstream i, give or take tol. From nginx's
// initial state the counts are exact (tol 0); after a change of weights or
// availability, the current weights carried over may shift one pick into a
// neighbouring window (tol 1), as in nginx.
func expectWindows(t *testing.T, seq []int, tol int, want ...int) {
	t.Helper()
	window := 0
	for _, w := range want {
		window += w
	}
	if len(seq) < window {
		t.Fatalf("%d picks, fewer than a window of %d", len(seq), window)
	}
	for start := 0; start+window <= len(seq); start++ {
		got := make([]int, len(want))
		for _, i := range seq[start : start+window] {
			if i < 0 || i >= len(got) {
				t.Fatalf("pick %d of %v is %d, not one of the %d upstreams", start, seq, i, len(want))
			}
			got[i]++
		}
		for i := range got {
			if got[i] < want[i]-tol || got[i] > want[i]+tol {
				t.Fatalf("picks %d..%d of %v: counts %v, want %v (±%d) in every %d consecutive picks", start, start+window-1, seq, got, want, tol, window)
			}
		}
	}
}

func equalInts(a, b []int) bool { return reflect.DeepEqual(a, b) }

// count counts the picks of each of n upstreams.
func count(seq []int, n int) []int {
	got := make([]int, n)
	for _, i := range seq {
		if i >= 0 {
			got[i]++
		}
	}
	return got
}

func TestSmoothSequence(t *testing.T) {
	for _, weights := range [][]float64{{1, 2, 7}, {0.1, 0.2, 0.7}, {100, 200, 700}} {
		t.Run(fmt.Sprint(weights), func(t *testing.T) {
			svc := publish(t, weights...)
			s := new(RegistryWeightedSelection)
			p := pool(svc.dials...)
			seq := picks(s, p, 100)
			// nginx's smooth order for 1:2:7 (ngx_http_upstream_get_peer)
			want := []int{2, 1, 2, 2, 0, 2, 2, 1, 2, 2}
			if !equalInts(seq[:10], want) {
				t.Fatalf("first 10 picks %v, want nginx's %v", seq[:10], want)
			}
			expectWindows(t, seq, 0, 1, 2, 7)
		})
	}
}

func TestWeightZeroNeverPicked(t *testing.T) {
	svc := publish(t, 1, 0, 3)
	s := new(RegistryWeightedSelection)
	p := pool(svc.dials...)
	seq := picks(s, p, 100)
	if got := count(seq, 3); got[1] != 0 || got[0] != 25 || got[2] != 75 {
		t.Fatalf("weights 1, 0, 3: counts %v, want [25 0 75]", got)
	}
	svc.set(0, 0, 0)
	if got := s.Select(p, nil, nil); got != nil {
		t.Fatalf("all weights 0: selected %s, want none", got.Dial)
	}
}

// TestUnavailableSkipped: an unavailable upstream gets nothing and the
// others keep their ratio exactly; back up, it takes its share again.
func TestUnavailableSkipped(t *testing.T) {
	svc := publish(t, 1, 2, 7)
	s := new(RegistryWeightedSelection)
	p := pool(svc.dials...)
	picks(s, p, 13) // anywhere in the sequence

	setAvailable(t, p[2], false)
	seq := picks(s, p, 30)
	if got := count(seq, 3); got[2] != 0 {
		t.Fatalf("the unavailable upstream was picked: %v", got)
	}
	expectWindows(t, seq, 1, 1, 2)

	setAvailable(t, p[2], true)
	setAvailable(t, p[1], false)
	seq = picks(s, p, 40)
	if got := count(seq, 3); got[1] != 0 {
		t.Fatalf("the unavailable upstream was picked: %v", got)
	}
	expectWindows(t, dropMissing(seq, 1), 1, 1, 7)

	setAvailable(t, p[1], true)
	expectWindows(t, picks(s, p, 100), 1, 1, 2, 7)

	for _, u := range p {
		setAvailable(t, u, false)
	}
	if got := s.Select(p, nil, nil); got != nil {
		t.Fatalf("none available: selected %s", got.Dial)
	}
}

// dropMissing renumbers picks of a pool without upstream gone, for expectWindows.
func dropMissing(seq []int, gone int) []int {
	out := make([]int, len(seq))
	for k, i := range seq {
		if i > gone {
			i--
		}
		out[k] = i
	}
	return out
}

// TestSingleUpstream: a pool of one takes the lock-free path, which follows
// weight, availability and address changes like the others.
func TestSingleUpstream(t *testing.T) {
	svc := publish(t, 2)
	s := new(RegistryWeightedSelection)
	p := pool(svc.dials...)
	for range 3 {
		if s.Select(p, nil, nil) != p[0] {
			t.Fatal("the only upstream was not selected")
		}
	}
	if s.one.Load() == nil {
		t.Fatal("a pool of one did not set up the lock-free path")
	}
	svc.set(0)
	if s.Select(p, nil, nil) != nil {
		t.Fatal("the only upstream, at weight 0, was selected")
	}
	svc.set(1)
	setAvailable(t, p[0], false)
	if s.Select(p, nil, nil) != nil {
		t.Fatal("the only upstream, unavailable, was selected")
	}
	setAvailable(t, p[0], true)
	static := pool("127.0.0.1:9000")
	if s.Select(static, nil, nil) != static[0] {
		t.Fatal("a static upstream alone was not selected")
	}
	svc.set() // the address leaves: weight 1, as without a registry
	if s.Select(p, nil, nil) != p[0] {
		t.Fatal("an upstream without a registry weight was not selected")
	}
	if n := testing.AllocsPerRun(1000, func() { s.Select(p, nil, nil) }); n != 0 {
		t.Fatalf("Select of one upstream allocates %v times, want 0", n)
	}
}

// TestStaticUpstreams: upstreams without a registry weight weigh 1, alone
// or beside registry ones.
func TestStaticUpstreams(t *testing.T) {
	s := new(RegistryWeightedSelection)
	p := pool("127.0.0.1:9001", "127.0.0.1:9002", "127.0.0.1:9003")
	expectWindows(t, picks(s, p, 30), 0, 1, 1, 1)

	svc := publish(t, 3)
	s = new(RegistryWeightedSelection)
	p = pool("127.0.0.1:9001", svc.dials[0])
	expectWindows(t, picks(s, p, 40), 0, 1, 3)
}

// TestWeightChange: a change applies from the next pick on.
func TestWeightChange(t *testing.T) {
	svc := publish(t, 1, 1)
	s := new(RegistryWeightedSelection)
	p := pool(svc.dials...)
	expectWindows(t, picks(s, p, 10), 0, 1, 1)

	svc.set(1, 0)
	if seq := picks(s, p, 5); count(seq, 2)[1] != 0 {
		t.Fatalf("weight set to 0, still picked: %v", seq)
	}
	svc.set(1, 3)
	seq := picks(s, p, 100)
	if seq[0] != 1 {
		t.Fatalf("after 1:0 became 1:3, the first pick is %d, want 1", seq[0])
	}
	expectWindows(t, seq, 0, 1, 3)

	// a Kubernetes-like source's weight 1 and a vanished registry weight
	// both count as 1
	svc.set(1) // the second address leaves the registry
	expectWindows(t, picks(s, p, 20), 0, 1, 1)
}

// TestTwoServicesSameAddress: an address listed by two services with
// different weights weighs the largest, and follows when that one leaves.
func TestTwoServicesSameAddress(t *testing.T) {
	a := publish(t, 1, 2)
	var b upstreams.Cell
	b.Store(upstreams.NewSnapshot([]upstreams.Target{{Addr: netip.MustParseAddr(strings.Split(a.dials[0], ":")[0]), Port: 80, Weight: 6}}, nil))
	unregister := upstreams.Register("test", "other", &b)
	s := new(RegistryWeightedSelection)
	p := pool(a.dials...)
	expectWindows(t, picks(s, p, 40), 0, 6, 2)
	unregister()
	expectWindows(t, picks(s, p, 30), 0, 1, 2)
}

// TestPoolChanges: upstreams joining or leaving keep the others' place in
// the sequence (their current weights move by one common shift only).
func TestPoolChanges(t *testing.T) {
	svc := publish(t, 1, 2, 7, 10)
	d := svc.dials
	s := new(RegistryWeightedSelection)
	picks(s, pool(d[0], d[1], d[2]), 4)
	before := currents(s)

	s.lookup(pool(d[0], d[1], d[2], d[3]), upstreams.WeightsGeneration())
	after := currents(s)
	if after[d[3]] != 0 {
		t.Fatalf("a new upstream starts at %d, want 0", after[d[3]])
	}
	shift := before[d[0]] - after[d[0]]
	for _, k := range d[:3] {
		if before[k]-after[k] != shift {
			t.Fatalf("joining moved the others apart: before %v, after %v", before, after)
		}
	}
	expectWindows(t, picks(s, pool(d[0], d[1], d[2], d[3]), 100), 1, 1, 2, 7, 10)

	before = currents(s)
	s.lookup(pool(d[0], d[2], d[3]), upstreams.WeightsGeneration())
	after = currents(s)
	shift = before[d[0]] - after[d[0]]
	sum := int64(0)
	for _, k := range []string{d[0], d[2], d[3]} {
		if before[k]-after[k] != shift {
			t.Fatalf("leaving moved the others apart: before %v, after %v", before, after)
		}
		sum += after[k]
	}
	if sum < -2 || sum > 2 {
		t.Fatalf("current weights add up to %d after a leave, want about 0", sum)
	}
	expectWindows(t, picks(s, pool(d[0], d[2], d[3]), 90), 1, 1, 7, 10)
}

func currents(s *RegistryWeightedSelection) map[string]int64 {
	m := make(map[string]int64)
	for _, sl := range s.slots {
		m[sl.dial] = sl.current
	}
	return m
}

// TestRepublishKeepsState: a new generation of the weight index (another
// address came or went) or a new pool value with the same addresses does
// not restart the sequence.
func TestRepublishKeepsState(t *testing.T) {
	svc := publish(t, 1, 2, 7)
	s := new(RegistryWeightedSelection)
	var seq []int
	for k := range 30 {
		if k%7 == 3 {
			publish(t, 1) // a new address elsewhere: new generation
		}
		seq = append(seq, picks(s, pool(svc.dials...), 1)...)
	}
	expectWindows(t, seq, 0, 1, 2, 7)
}

// TestConcurrent selects from several goroutines while the weights, the
// addresses and the pool change (run with -race).
func TestConcurrent(t *testing.T) {
	svc := publish(t, 1, 2, 7, 1)
	dials := slices.Clone(svc.dials)
	s := new(RegistryWeightedSelection)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for k := range 500 {
			if k%2 == 0 {
				svc.set(1, float64(k%3), 7) // the fourth address leaves
			} else {
				svc.set(1, float64(k%3), 7, 1)
			}
		}
	}()
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			p := pool(dials...)
			for k := range 2000 {
				if k%100 == 0 {
					p = pool(dials[k/100%2:]...)
				}
				if s.Select(p, nil, nil) == nil {
					t.Error("nothing selected")
					return
				}
			}
		})
	}
	wg.Wait()
	<-done
}

func TestSelectAllocations(t *testing.T) {
	svc := publish(t, 1, 2, 7, 1, 1, 1, 1, 1, 1, 1)
	s := new(RegistryWeightedSelection)
	p := pool(append(svc.dials, "127.0.0.1:9000")...)
	s.Select(p, nil, nil)
	if n := testing.AllocsPerRun(1000, func() { s.Select(p, nil, nil) }); n != 0 {
		t.Fatalf("Select allocates %v times, want 0", n)
	}
	// a pool change after the first: no allocation up to the largest pool yet
	small := p[:5]
	if n := testing.AllocsPerRun(100, func() { s.Select(small, nil, nil); s.Select(p, nil, nil) }); n != 0 {
		t.Fatalf("Select allocates %v times per pool change, want 0", n)
	}
}

func TestToUnits(t *testing.T) {
	for _, tc := range []struct {
		w    float64
		want int64
	}{
		{1, unit}, {0.1, unit / 10}, {0, 0}, {-1, 0}, {1e-9, 1}, {2e6, maxWeight * unit},
	} {
		if got := toUnits(tc.w); got != tc.want {
			t.Errorf("toUnits(%v) = %d, want %d", tc.w, got, tc.want)
		}
	}
}

func TestUnmarshalCaddyfile(t *testing.T) {
	for input, wantErr := range map[string]string{
		"registry_weighted":             "",
		"registry_weighted 1 2":         "wrong argument count",
		"registry_weighted {\n\tx 1\n}": "unrecognized registry_weighted option 'x'",
	} {
		t.Run(input, func(t *testing.T) {
			err := new(RegistryWeightedSelection).UnmarshalCaddyfile(caddyfile.NewTestDispenser(input))
			switch {
			case wantErr == "" && err != nil:
				t.Fatal(err)
			case wantErr != "" && (err == nil || !strings.Contains(err.Error(), wantErr)):
				t.Fatalf("err = %v, want it to contain %q", err, wantErr)
			}
		})
	}
}

// TestConfig: the Caddyfile's lb_policy adapts to the JSON
// {"policy": "registry_weighted"}, which Caddy loads and provisions.
func TestConfig(t *testing.T) {
	adapter := caddyconfig.GetAdapter("caddyfile")
	cfg, warnings, err := adapter.Adapt([]byte(`:8080 {
	reverse_proxy 127.0.0.1:9001 127.0.0.1:9002 {
		lb_policy registry_weighted
	}
}
`), nil)
	if err != nil || len(warnings) > 0 {
		t.Fatalf("adapting: %v %v", err, warnings)
	}
	var parsed struct {
		Apps struct {
			HTTP struct {
				Servers map[string]struct {
					Routes []struct {
						Handle []struct {
							LoadBalancing struct {
								SelectionPolicy json.RawMessage `json:"selection_policy"`
							} `json:"load_balancing"`
						} `json:"handle"`
					} `json:"routes"`
				} `json:"servers"`
			} `json:"http"`
		} `json:"apps"`
	}
	if err := json.Unmarshal(cfg, &parsed); err != nil {
		t.Fatal(err)
	}
	got := string(parsed.Apps.HTTP.Servers["srv0"].Routes[0].Handle[0].LoadBalancing.SelectionPolicy)
	if got != `{"policy":"registry_weighted"}` {
		t.Fatalf("selection_policy = %s\nconfig: %s", got, cfg)
	}
	if err := caddy.Validate(&caddy.Config{AppsRaw: caddy.ModuleMap{"http": mustJSON(t, cfg, "http")}}); err != nil {
		t.Fatalf("validating the adapted config: %v", err)
	}
}

// mustJSON returns the app's raw JSON from an adapted config.
func mustJSON(t *testing.T, cfg []byte, app string) json.RawMessage {
	t.Helper()
	var c struct {
		Apps map[string]json.RawMessage `json:"apps"`
	}
	if err := json.Unmarshal(cfg, &c); err != nil {
		t.Fatal(err)
	}
	return c.Apps[app]
}
