package upstreams

import (
	"fmt"
	"net/netip"
	"runtime"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// BenchmarkServiceFootprint reports the live heap that one registered
// service costs in the core (its cell, its snapshot of one backend, its
// metric series, after a scrape), over 10,000 services: what bounds how
// many services one gateway can follow.
//
//	go test -run '^$' -bench ServiceFootprint -benchtime 1x ./upstreams/
func BenchmarkServiceFootprint(b *testing.B) {
	const n = 10000
	reg := prometheus.NewPedanticRegistry()
	if err := RegisterMetrics(reg); err != nil {
		b.Fatal(err)
	}
	heap := func() uint64 {
		runtime.GC()
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	for b.Loop() {
		before := heap()
		cells := make([]*Cell, n)
		unregister := make([]func(), n)
		for i := range cells {
			c := new(Cell)
			c.Store(NewSnapshot([]Target{{Addr: netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}), Port: 8080, Weight: 1}}, nil))
			unregister[i] = Register("bench", fmt.Sprintf("namespace/service-%d:http", i), c)
			cells[i] = c
		}
		if _, err := reg.Gather(); err != nil {
			b.Fatal(err)
		}
		after := heap()
		b.ReportMetric(float64(after-before)/n, "B/service")
		for _, u := range unregister {
			u()
		}
		runtime.KeepAlive(cells)
	}
}
