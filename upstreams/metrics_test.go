// Tests of the metrics registration and the per-service series, and the
// helpers that read a registry (registry, sample, expect, expectAbsent),
// which link_test.go uses too.

package upstreams

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
)

// registry is a fresh registry like the one Caddy makes for each config,
// with the discovery metrics registered.
func registry(t *testing.T) *prometheus.Registry {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	if err := RegisterMetrics(reg); err != nil {
		t.Fatal(err)
	}
	return reg
}

// sample reads the value of the metric name whose labels include every
// given name=value pair, and whether there is exactly one such sample. A
// histogram's value is its sample count.
func sample(t *testing.T, reg prometheus.Gatherer, name string, labels ...string) (float64, bool) {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var found []float64
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			if matches(m, labels) {
				switch {
				case m.Gauge != nil:
					found = append(found, m.GetGauge().GetValue())
				case m.Counter != nil:
					found = append(found, m.GetCounter().GetValue())
				case m.Histogram != nil:
					found = append(found, float64(m.GetHistogram().GetSampleCount()))
				}
			}
		}
	}
	if len(found) > 1 {
		t.Fatalf("%s%v: %d samples, want at most 1", name, labels, len(found))
	}
	if len(found) == 0 {
		return 0, false
	}
	return found[0], true
}

func matches(m *dto.Metric, labels []string) bool {
	for i := 0; i+1 < len(labels); i += 2 {
		if !slices.ContainsFunc(m.GetLabel(), func(l *dto.LabelPair) bool {
			return l.GetName() == labels[i] && l.GetValue() == labels[i+1]
		}) {
			return false
		}
	}
	return true
}

// expect fails unless the sample exists with value want.
func expect(t *testing.T, reg prometheus.Gatherer, want float64, name string, labels ...string) {
	t.Helper()
	got, ok := sample(t, reg, name, labels...)
	if !ok || got != want {
		t.Fatalf("%s%v = %v (present: %v), want %v", name, labels, got, ok, want)
	}
}

// expectAbsent fails if the sample exists.
func expectAbsent(t *testing.T, reg prometheus.Gatherer, name string, labels ...string) {
	t.Helper()
	if got, ok := sample(t, reg, name, labels...); ok {
		t.Fatalf("%s%v = %v, want no such series", name, labels, got)
	}
}

func TestRegisterMetricsTwice(t *testing.T) {
	reg := registry(t)
	if err := RegisterMetrics(reg); err != nil {
		t.Fatalf("a second registration in the same registry (another module of the config) must be a no-op: %v", err)
	}
	// Each config load has a registry of its own: the collectors are
	// process-wide, so a reload registers them again, elsewhere.
	if err := RegisterMetrics(prometheus.NewPedanticRegistry()); err != nil {
		t.Fatal(err)
	}
	clash := prometheus.NewGauge(prometheus.GaugeOpts{Name: "caddy_discovery_connected", Help: "not ours"})
	other := prometheus.NewPedanticRegistry()
	other.MustRegister(clash)
	if err := RegisterMetrics(other); err == nil {
		t.Fatal("a different collector of the same name must be an error")
	}
}

func TestServiceMetrics(t *testing.T) {
	reg := registry(t)
	svc := []string{"source", "test", "service", "metrics/follow"}
	kind := func(k ProblemKind) []string { return append(slices.Clone(svc), "kind", k.String()) }

	var c Cell
	c.Store(NewSnapshot(nil, Pending(errors.New("waiting for the first list"))))
	unregister := Register("test", "metrics/follow", &c)
	expect(t, reg, 0, "caddy_discovery_backends", svc...)
	expect(t, reg, 0, "caddy_discovery_updates_total", svc...)
	for k := range numKinds {
		expect(t, reg, 0, "caddy_discovery_problems_total", kind(k)...) // present before the first problem
	}
	expectAbsent(t, reg, "caddy_discovery_last_update_timestamp_seconds", svc...)

	// The first list: an update.
	before := time.Now()
	c.Store(NewSnapshot([]Target{target("10.9.0.1", 80, 1), target("10.9.0.2", 80, 1)}, nil))
	expect(t, reg, 2, "caddy_discovery_backends", svc...)
	expect(t, reg, 1, "caddy_discovery_updates_total", svc...)
	if at, _ := sample(t, reg, "caddy_discovery_last_update_timestamp_seconds", svc...); at < float64(before.Unix()) || at > float64(time.Now().Unix()+1) {
		t.Fatalf("last update at %v, want about %v", at, before.Unix())
	}

	// The same backends again (a refresh after an unrelated event): no update.
	c.Store(NewSnapshot([]Target{target("10.9.0.2", 80, 1), target("10.9.0.1", 80, 1)}, nil))
	expect(t, reg, 1, "caddy_discovery_updates_total", svc...)
	// A weight change is an update, as is scaling up.
	c.Store(NewSnapshot([]Target{target("10.9.0.1", 80, 1), target("10.9.0.2", 80, 3)}, nil))
	c.Store(NewSnapshot([]Target{target("10.9.0.1", 80, 1), target("10.9.0.2", 80, 3), target("10.9.0.3", 80, 1)}, nil))
	expect(t, reg, 3, "caddy_discovery_updates_total", svc...)
	expect(t, reg, 3, "caddy_discovery_backends", svc...)

	// A watch problem while the last known backends stay in use: counted
	// once, however often it is published again, and not an update.
	up := []Target{target("10.9.0.1", 80, 1)}
	forbidden := Problem(KindForbidden, errors.New("403"))
	c.Store(NewSnapshot(up, nil))
	for range 3 {
		c.Store(NewSnapshot(up, forbidden))
	}
	expect(t, reg, 1, "caddy_discovery_problems_total", kind(KindForbidden)...)
	expect(t, reg, 4, "caddy_discovery_updates_total", svc...)
	expect(t, reg, 1, "caddy_discovery_backends", svc...)
	// It ends; a new one begins: counted again.
	c.Store(NewSnapshot(up, nil))
	c.Store(NewSnapshot(up, forbidden))
	expect(t, reg, 2, "caddy_discovery_problems_total", kind(KindForbidden)...)

	// No backends while unreachable: the no_backends problem begins with it
	// and does not begin again when the connection comes back.
	unreachable := Problem(KindUnreachable, errors.New("connection refused"))
	c.Store(NewSnapshot(nil, fmt.Errorf("%w; %w", Problem(KindNoBackends, errors.New("no instances")), unreachable)))
	c.Store(NewSnapshot(nil, fmt.Errorf("no instances: %w", ErrNoTargets)))
	expect(t, reg, 1, "caddy_discovery_problems_total", kind(KindUnreachable)...)
	expect(t, reg, 1, "caddy_discovery_problems_total", kind(KindNoBackends)...)
	expect(t, reg, 0, "caddy_discovery_backends", svc...)
	expect(t, reg, 0, "caddy_discovery_problems_total", kind(KindOther)...)
	c.Store(NewSnapshot(nil, errors.New("unclassified")))
	expect(t, reg, 1, "caddy_discovery_problems_total", kind(KindOther)...)

	unregister()
	for _, name := range []string{"caddy_discovery_backends", "caddy_discovery_updates_total", "caddy_discovery_problems_total", "caddy_discovery_last_update_timestamp_seconds"} {
		expectAbsent(t, reg, name, svc...)
	}
	// Unregistered, the cell feeds nothing.
	c.Store(NewSnapshot(up, nil))
	expectAbsent(t, reg, "caddy_discovery_backends", svc...)
}

// TestServiceMetricsReload: during a reload the new config's cell registers
// before the old one leaves, and both publish every change: nothing counts
// twice, and counters go on across the reload.
func TestServiceMetricsReload(t *testing.T) {
	reg := registry(t)
	svc := []string{"source", "test", "service", "metrics/reload"}
	forbidden := []string{"source", "test", "service", "metrics/reload", "kind", "forbidden"}
	two := []Target{target("10.9.1.1", 80, 1), target("10.9.1.2", 80, 1)}
	three := append(slices.Clone(two), target("10.9.1.3", 80, 1))

	var old, cur Cell
	old.Store(NewSnapshot(two, nil))
	leaveOld := Register("test", "metrics/reload", &old)
	expect(t, reg, 1, "caddy_discovery_updates_total", svc...)

	// The new config's cell starts from the same shared watch.
	cur.Store(NewSnapshot(two, nil))
	leaveCur := Register("test", "metrics/reload", &cur)
	expect(t, reg, 1, "caddy_discovery_updates_total", svc...)
	expect(t, reg, 2, "caddy_discovery_backends", svc...)

	// One change, published by both.
	old.Store(NewSnapshot(three, nil))
	expect(t, reg, 3, "caddy_discovery_backends", svc...)
	cur.Store(NewSnapshot(three, nil))
	expect(t, reg, 2, "caddy_discovery_updates_total", svc...)
	expect(t, reg, 3, "caddy_discovery_backends", svc...)

	// One problem, published by both.
	err := Problem(KindForbidden, errors.New("403"))
	cur.Store(NewSnapshot(three, err))
	old.Store(NewSnapshot(three, err))
	expect(t, reg, 1, "caddy_discovery_problems_total", forbidden...)

	leaveOld()
	expect(t, reg, 2, "caddy_discovery_updates_total", svc...)
	cur.Store(NewSnapshot(two, nil))
	expect(t, reg, 3, "caddy_discovery_updates_total", svc...)
	expect(t, reg, 2, "caddy_discovery_backends", svc...)
	cur.Store(NewSnapshot(two, err))
	expect(t, reg, 2, "caddy_discovery_problems_total", forbidden...)
	leaveCur()
	expectAbsent(t, reg, "caddy_discovery_backends", svc...)
}

// TestServiceMetricsShared: two sources of one service with different
// selections (e.g. k8s endpoints and node_port targets) share its series:
// the backends in use are the distinct addresses of both.
func TestServiceMetricsShared(t *testing.T) {
	reg := registry(t)
	svc := []string{"source", "test", "service", "metrics/shared"}
	var a, b Cell
	a.Store(NewSnapshot([]Target{target("10.9.2.1", 80, 1), target("10.9.2.2", 80, 1)}, nil))
	b.Store(NewSnapshot([]Target{target("10.9.2.2", 80, 1), target("10.9.2.9", 30080, 1)}, nil))
	leaveA := Register("test", "metrics/shared", &a)
	leaveB := Register("test", "metrics/shared", &b)
	expect(t, reg, 3, "caddy_discovery_backends", svc...)
	expect(t, reg, 2, "caddy_discovery_updates_total", svc...)
	// b refreshes without a change: nothing counts
	b.Store(NewSnapshot([]Target{target("10.9.2.2", 80, 1), target("10.9.2.9", 30080, 1)}, nil))
	expect(t, reg, 2, "caddy_discovery_updates_total", svc...)
	leaveA()
	expect(t, reg, 2, "caddy_discovery_backends", svc...)
	leaveB()
}

// TestMetricsLint checks the metrics with Prometheus's linter (names, help,
// units, counter suffixes).
func TestMetricsLint(t *testing.T) {
	reg := registry(t)
	var c Cell
	c.Store(NewSnapshot([]Target{target("10.9.3.1", 80, 1)}, nil))
	unregister := Register("test", "metrics/lint", &c)
	defer unregister()
	l := NewLink("test", "lint", nil)
	defer l.Close()
	problems, err := testutil.GatherAndLint(reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		if strings.HasPrefix(p.Metric, "caddy_discovery_") {
			t.Errorf("%s: %s", p.Metric, p.Text)
		}
	}
}

// TestRegisterInvalidUTF8: a service label that is not UTF-8 is repaired,
// not a panic that would leave the index locked for every later source.
func TestRegisterInvalidUTF8(t *testing.T) {
	var a, b Cell
	a.Store(NewSnapshot(nil, nil))
	unregister := Register("nacos", "shop@@orders (metadata \x9e\x9ew=)", &a)
	done := make(chan struct{})
	go func() {
		defer close(done)
		Register("nacos", "other", &b)()
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Register blocked after a label that is not UTF-8")
	}
	unregister()
}
