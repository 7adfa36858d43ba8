package nacos

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/nacos-group/nacos-sdk-go/v2/model"
	"go.uber.org/zap"

	"github.com/caddy-discovery/caddy-discovery/upstreams"
)

// filter is what a source selects from a service's instances.
type filter struct {
	clusters []string          // cluster names; empty: all
	metadata map[string]string // every pair must match; empty: all
}

func (f filter) String() string {
	clusters := ""
	if len(f.clusters) > 0 {
		clusters = "clusters " + strings.Join(f.clusters, ",")
	}
	return upstreams.Selecting(f.metadata, clusters)
}

// skipped counts why instances were left out, for error messages.
type skipped struct {
	total, unhealthy, disabled, noWeight, cluster, metadata, badAddr int
	marked                                                           int // with the metadata, usable or not
}

func (s skipped) String() string {
	var parts []string
	for _, p := range []struct {
		n    int
		what string
	}{
		{s.unhealthy, "unhealthy"}, {s.disabled, "disabled"}, {s.noWeight, "with weight 0"},
		{s.cluster, "in other clusters"}, {s.metadata, "not matching the metadata"}, {s.badAddr, "with an invalid address"},
	} {
		if p.n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", p.n, p.what))
		}
	}
	return strings.Join(parts, ", ")
}

// targets selects the usable instances: healthy, enabled, weight > 0, in one
// of the clusters and matching the metadata, with a valid IP and port (not
// 0.0.0.0 or ::, nor zoned: see upstreams.ParseAddr).
// Nothing in the list can make it panic.
func (f filter) targets(list []model.Instance) ([]upstreams.Target, skipped) {
	out := make([]upstreams.Target, 0, len(list))
	s := skipped{total: len(list)}
	for i := range list {
		in := &list[i]
		marked := upstreams.HasMetadata(in.Metadata, f.metadata)
		if marked {
			s.marked++
		}
		switch {
		case !in.Healthy:
			s.unhealthy++
			continue
		case !in.Enable:
			s.disabled++
			continue
		case !(in.Weight > 0) || math.IsInf(in.Weight, 0): // also NaN
			s.noWeight++
			continue
		case len(f.clusters) > 0 && !slices.Contains(f.clusters, in.ClusterName):
			s.cluster++
			continue
		}
		if !marked {
			s.metadata++
			continue
		}
		addr, ok := upstreams.ParseAddr(strings.TrimSuffix(strings.TrimPrefix(in.Ip, "["), "]"))
		if !ok || in.Port == 0 || in.Port > math.MaxUint16 {
			s.badAddr++
			continue
		}
		out = append(out, upstreams.Target{Addr: addr, Port: uint16(in.Port), Weight: in.Weight})
	}
	return out, s
}

// view is one source's selection from a shared subscription: its filter, and
// protect_threshold's memory of what it last published. The subscription's fanout
// hands it lists and trouble, and it publishes what it selects through the
// source's publisher, which GetUpstreams reads. The fanout serializes its
// use.
type view struct {
	w *subscription // set when added to it

	filter  filter
	protect float64 // protect_threshold; 0: off
	// reconcile is the source's reconcile_interval; 0: off. Set before
	// the view is added to its subscription.
	reconcile time.Duration

	pub *upstreams.Publisher

	last    []upstreams.Target // the targets last published
	holding bool               // last is kept under protect_threshold
}

// choice is what a view selects from one list.
type choice struct {
	targets []upstreams.Target
	skipped skipped
	update  int // how many targets the list had for the view
	// held is set when protect_threshold keeps the last targets; started
	// when it did not keep them before.
	held, started bool
}

// choose selects the targets of list. While protecting (the connection is
// down or just back), an update that would leave fewer than protect_threshold
// of the last targets keeps those instead.
func (v *view) choose(list []model.Instance, protecting bool) choice {
	targets, skip := v.filter.targets(list)
	if v.protect > 0 && len(v.last) > 0 && float64(len(targets)) < v.protect*float64(len(v.last)) && protecting {
		c := choice{targets: v.last, skipped: skip, update: len(targets), held: true, started: !v.holding}
		v.holding = true
		return c
	}
	v.holding = false
	v.last = targets
	return choice{targets: targets, skipped: skip, update: len(targets)}
}

// Receive publishes what the view selects from the service's new list.
func (v *view) Receive(list []model.Instance) {
	c := v.choose(list, v.w.c.protecting())
	if c.started {
		caddy.Log().Named("nacos").Warn("keeping the last known instances: the update would leave too few while the nacos connection is unhealthy or just restored (protect_threshold)",
			zap.String("service", v.w.ref.String()), zap.Int("kept", len(c.targets)), zap.Int("update", c.update),
			zap.Float64("protect_threshold", v.protect))
	}
	var why error
	if len(c.targets) == 0 {
		why = v.w.noTargets(v.filter, c.skipped)
	}
	v.pub.List(c.targets, why)
}

// Trouble publishes what keeps the service's list from being current.
func (v *view) Trouble(err error) { v.pub.Trouble(err) }
