package upstreams

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"testing"
)

func target(addr string, port uint16, weight float64) Target {
	return Target{Addr: netip.MustParseAddr(addr), Port: port, Weight: weight}
}

func TestSnapshot(t *testing.T) {
	s := NewSnapshot([]Target{
		target("10.0.0.10", 80, 1),
		target("fd00::1", 80, 3),
		target("10.0.0.9", 8080, 2),
		target("10.0.0.9", 80, 1),
		target("10.0.0.10", 80, 1), // duplicate
	}, nil)
	want := []string{"10.0.0.9:80", "10.0.0.9:8080", "10.0.0.10:80", "[fd00::1]:80"}
	if !slices.Equal(s.Dials(), want) {
		t.Fatalf("dials = %v, want %v (sorted by address, then port, without duplicates)", s.Dials(), want)
	}
	if w := s.Weight("[fd00::1]:80"); w != 3 {
		t.Errorf("weight = %v, want 3", w)
	}
	a, err := s.Upstreams()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := s.Upstreams()
	for i := range a {
		if a[i].Dial != want[i] || a[i] == b[i] {
			t.Fatalf("upstream %d: %q (fresh: %v)", i, a[i].Dial, a[i] != b[i])
		}
	}
	a[0].Dial = "changed"
	if s.Dials()[0] != want[0] {
		t.Fatal("writing into a returned upstream changed the snapshot")
	}
}

func TestSnapshotErrors(t *testing.T) {
	problem := errors.New("registry unreachable")
	if _, err := NewSnapshot(nil, problem).Upstreams(); !errors.Is(err, problem) {
		t.Errorf("no targets with a problem: err = %v", err)
	}
	if _, err := NewSnapshot(nil, nil).Upstreams(); !errors.Is(err, ErrNoTargets) {
		t.Errorf("no targets: err = %v", err)
	}
	ups, err := NewSnapshot([]Target{target("10.0.0.1", 80, 1)}, problem).Upstreams()
	if err != nil || len(ups) != 1 {
		t.Errorf("last known targets must be served despite a problem: %v, %v", ups, err)
	}
}

func TestUpstreamsAllocations(t *testing.T) {
	var ts []Target
	for i := range 100 {
		ts = append(ts, target("10.0.1.1", uint16(1000+i), 1))
	}
	s := NewSnapshot(ts, nil)
	if n := testing.AllocsPerRun(100, func() { _, _ = s.Upstreams() }); n > 2 {
		t.Fatalf("Upstreams allocates %v times per call, want at most 2", n)
	}
}

func TestDump(t *testing.T) {
	var c Cell
	unregister := Register("test", "ns/svc:http", &c)
	c.Store(NewSnapshot([]Target{target("10.0.0.1", 80, 2)}, errors.New("watch failing")))

	rec := httptest.NewRecorder()
	if err := serveDump(rec, httptest.NewRequest(http.MethodGet, "/discovery/upstreams", nil)); err != nil {
		t.Fatal(err)
	}
	var got []DumpEntry
	if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(got, func(e DumpEntry) bool { return e.Source == "test" })
	if i < 0 || got[i].Service != "ns/svc:http" || len(got[i].Upstreams) != 1 ||
		got[i].Upstreams[0] != (DumpTarget{Dial: "10.0.0.1:80", Weight: 2}) || got[i].Error != "watch failing" || got[i].Updated.IsZero() {
		t.Fatalf("dump = %+v", got)
	}
	unregister()
	if slices.ContainsFunc(Dump(), func(e DumpEntry) bool { return e.Source == "test" }) {
		t.Fatal("an unregistered source must leave the dump")
	}
	if err := serveDump(httptest.NewRecorder(), httptest.NewRequest(http.MethodPost, "/discovery/upstreams", nil)); err == nil {
		t.Fatal("POST must be refused")
	}
}
