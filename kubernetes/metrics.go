package kubernetes

import (
	"slices"
	"time"

	"github.com/caddy-discovery/caddy-discovery/upstreams"
)

// propagationSeconds is kube-proxy's network programming latency
// (kubeproxy_network_programming_duration_seconds) for Caddy: from the
// change that caused an EndpointSlice update (the endpoints.kubernetes.io/
// last-change-trigger-time annotation that the EndpointSlice controller
// sets, e.g. a Pod becoming ready) to the upstreams being published. The
// annotation comes from Pod condition times, which have whole seconds once
// written as JSON: the figures can then be up to 1 s high. The buckets are
// kube-proxy's, thinned out.
var propagationSeconds = upstreams.NewConnectionHistogram("caddy_discovery_k8s_propagation_seconds",
	"Time from the change behind an EndpointSlice update (its endpoints.kubernetes.io/last-change-trigger-time) to Caddy publishing the new upstreams.",
	[]float64{0.25, 0.5, 1, 2, 3, 5, 10, 20, 30, 60, 120, 300})

// triggerTime is the time of the change behind an EndpointSlice's add or
// update, as kube-proxy takes it: its last-change-trigger-time annotation,
// when the slice's endpoints or ports changed (not on a relist or resync of
// an unchanged slice, nor on a change of its labels alone), and the time is
// not older than the set (a change from before Caddy watched; the initial
// list is not observed anyway, see changedAt). The annotation can have
// whole seconds, so two changes within a second may carry the same value,
// and the set's creation counts by the second too. It is zero for other objects,
// deletions (whose annotation is of an earlier change) and slices without
// the annotation.
func (s *informerSet) triggerTime(oldObj, newObj any) time.Time {
	es, ok := newObj.(*cachedSlice)
	if !ok || es.trigger.IsZero() {
		return time.Time{}
	}
	if old, ok := oldObj.(*cachedSlice); ok && (old.ResourceVersion != "" && old.ResourceVersion == es.ResourceVersion ||
		slices.Equal(old.endpoints, es.endpoints) && slices.Equal(old.ports, es.ports)) {
		return time.Time{}
	}
	if es.trigger.Before(s.created.Truncate(time.Second)) {
		return time.Time{}
	}
	return es.trigger
}
