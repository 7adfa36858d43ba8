package upstreamstest

import (
	"slices"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/caddy-discovery/caddy-discovery/upstreams"
)

// Metrics is a registry like the one Caddy makes for each config, with the
// discovery metrics registered.
func Metrics(t testing.TB) *prometheus.Registry {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	if err := upstreams.RegisterMetrics(reg); err != nil {
		t.Fatal(err)
	}
	return reg
}

// Sample reads the value of metric name whose labels include every given
// name, value pair, and reports whether there is such a sample; it fails
// the test if there are several. A histogram's value is its sample count.
func Sample(t testing.TB, g prometheus.Gatherer, name string, labels ...string) (float64, bool) {
	t.Helper()
	families, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var found []float64
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			if !hasLabels(m, labels) {
				continue
			}
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
	if len(found) > 1 {
		t.Fatalf("%s%v: %d samples, want at most 1", name, labels, len(found))
	}
	if len(found) == 0 {
		return 0, false
	}
	return found[0], true
}

func hasLabels(m *dto.Metric, labels []string) bool {
	for i := 0; i+1 < len(labels); i += 2 {
		if !slices.ContainsFunc(m.GetLabel(), func(l *dto.LabelPair) bool {
			return l.GetName() == labels[i] && l.GetValue() == labels[i+1]
		}) {
			return false
		}
	}
	return true
}
