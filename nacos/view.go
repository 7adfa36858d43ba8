package nacos

import (
	"errors"
	"fmt"
	"maps"
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
	var parts []string
	if len(f.clusters) > 0 {
		parts = append(parts, "clusters "+strings.Join(f.clusters, ","))
	}
	if len(f.metadata) > 0 {
		var kv []string
		for _, k := range slices.Sorted(maps.Keys(f.metadata)) {
			kv = append(kv, k+"="+f.metadata[k])
		}
		parts = append(parts, "metadata "+strings.Join(kv, ","))
	}
	return strings.Join(parts, ", ")
}

// skipped counts why instances were left out, for error messages.
type skipped struct {
	total, unhealthy, disabled, noWeight, cluster, metadata, badAddr int
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
		match := true
		for k, v := range f.metadata {
			if got, ok := in.Metadata[k]; !ok || got != v {
				match = false
				break
			}
		}
		if !match {
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

// view is one source's selection from a shared watch; GetUpstreams reads its
// cell. The watch calls update with its lock held, so updates never overlap.
type view struct {
	w       *watch
	filter  filter
	protect float64 // protect_threshold; 0: off
	// reconcile is the source's reconcile_interval; 0: off. Set before
	// the view is added to its watch.
	reconcile time.Duration

	cell upstreams.Cell

	last        []upstreams.Target // the targets last published
	holding     bool
	lastProblem string // the no-instance problem last logged, "" if none
}

// update publishes the view of list; it reports whether protect_threshold
// keeps an older set.
func (v *view) update(list []model.Instance, have bool, problem error) (holding bool) {
	log := caddy.Log().Named("nacos")
	if !have {
		err := problem
		if err == nil {
			err = upstreams.Pending(fmt.Errorf("%s: waiting for the first instance list of service %s", v.w.c.where, v.w.ref))
		}
		v.cell.Store(upstreams.NewSnapshot(nil, err))
		v.note(log, err, 0)
		return false
	}
	targets, skip := v.filter.targets(list)
	if v.protect > 0 && len(v.last) > 0 && float64(len(targets)) < v.protect*float64(len(v.last)) && v.w.c.protecting() {
		if !v.holding {
			log.Warn("keeping the last known instances: the update would leave too few while the nacos connection is unhealthy or just restored (protect_threshold)",
				zap.String("service", v.w.ref.String()), zap.Int("kept", len(v.last)), zap.Int("update", len(targets)),
				zap.Float64("protect_threshold", v.protect))
		}
		v.holding = true
		v.cell.Store(upstreams.NewSnapshot(v.last, problem))
		return true
	}
	v.holding = false
	err := problem
	if len(targets) == 0 {
		err = v.noTargets(skip, problem)
	}
	v.last = targets
	v.cell.Store(upstreams.NewSnapshot(targets, err))
	v.note(log, err, len(targets))
	return false
}

// noTargets says why the service has no usable instance.
func (v *view) noTargets(skip skipped, problem error) error {
	w := v.w
	var err error
	switch {
	case skip.total == 0:
		err = upstreams.Problem(upstreams.KindNoBackends, fmt.Errorf("%s: service %s has no instances", w.c.where, w.ref))
		if d := w.diagnosis.Load(); d != nil {
			// the service, or anything in the namespace and group, is not there
			err = upstreams.Problem(upstreams.KindNotFound, fmt.Errorf("%s: service %s has no instances: %w", w.c.where, w.ref, d.err))
		}
	default:
		sel := ""
		if f := v.filter.String(); f != "" {
			sel = " (selecting " + f + ")"
		}
		err = upstreams.Problem(upstreams.KindNoBackends,
			fmt.Errorf("%s: service %s has no usable instance%s: of %d, %s", w.c.where, w.ref, sel, skip.total, skip))
	}
	if problem != nil {
		return fmt.Errorf("%w; %w", err, problem)
	}
	return fmt.Errorf("%w: %w", err, upstreams.ErrNoTargets)
}

// note logs, once each, when the service starts and stops having no usable
// instance. Waiting for the first list is not logged, nor are connection
// problems: the client logs those.
func (v *view) note(log *zap.Logger, err error, n int) {
	problem := ""
	if err != nil && n == 0 && v.w.have && errors.Is(err, upstreams.ErrNoTargets) {
		problem = err.Error()
	}
	if problem == v.lastProblem {
		return
	}
	switch {
	case problem != "":
		log.Warn("nacos service has no usable instances", zap.String("service", v.w.ref.String()), zap.Error(err))
	case n > 0:
		log.Info("nacos service has instances again", zap.String("service", v.w.ref.String()), zap.Int("backends", n))
	}
	v.lastProblem = problem
}
