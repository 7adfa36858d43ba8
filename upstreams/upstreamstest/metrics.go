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
	found := Samples(t, g, name, labels...)
	if len(found) > 1 {
		t.Fatalf("%s%v: %d samples, want at most 1", name, labels, len(found))
	}
	if len(found) == 0 {
		return 0, false
	}
	return Value(found[0]), true
}

// Sum adds up the values of the samples Samples returns.
func Sum(t testing.TB, g prometheus.Gatherer, name string, labels ...string) float64 {
	t.Helper()
	sum := 0.0
	for _, m := range Samples(t, g, name, labels...) {
		sum += Value(m)
	}
	return sum
}

// Samples returns the samples of metric name whose labels include every
// given name, value pair.
func Samples(t testing.TB, g prometheus.Gatherer, name string, labels ...string) []*dto.Metric {
	t.Helper()
	families, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var found []*dto.Metric
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			if hasLabels(m, labels) {
				found = append(found, m)
			}
		}
	}
	return found
}

// Value is a gauge's or counter's value, or a histogram's sample count.
func Value(m *dto.Metric) float64 {
	switch {
	case m.Gauge != nil:
		return m.GetGauge().GetValue()
	case m.Counter != nil:
		return m.GetCounter().GetValue()
	case m.Histogram != nil:
		return float64(m.GetHistogram().GetSampleCount())
	}
	return 0
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
