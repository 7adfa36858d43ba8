package kubernetes

import (
	"fmt"
	"sync"

	corev1 "k8s.io/api/core/v1"

	"github.com/caddy-discovery/caddy-discovery/upstreams"
)

// view is one upstream source's view of one Service port. Its
// informer sets push into its publisher: a new list computed from their
// caches when an object of the Service changes, and their trouble (the
// first list awaited, a failing watch) when it begins or ends.
type view struct {
	ref   Reference
	sel   selection
	ns    *informerSet // Services and EndpointSlices of ref.Namespace
	nodes *informerSet // Nodes, for targetNodePort only

	pub *upstreams.Publisher

	mu sync.Mutex // serializes refresh, so an older list never overwrites a newer one
}

// sets lists the view's informer sets.
func (s *view) sets() []*informerSet {
	if s.nodes == nil {
		return []*informerSet{s.ns}
	}
	return []*informerSet{s.ns, s.nodes}
}

// refresh recomputes the targets from the informers' caches and publishes
// them, once every set has listed its objects.
func (s *view) refresh() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, set := range s.sets() {
		if !set.synced.Load() {
			return // the sets' trouble says that the first list is awaited
		}
	}
	s.pub.List(s.compute())
}

// troubled publishes the sets' current trouble: the first that has one.
func (s *view) troubled() {
	var trouble error
	for _, set := range s.sets() {
		if _, problem := set.state(); problem != nil {
			trouble = problem
			break
		}
	}
	s.pub.Trouble(trouble)
}

// compute selects the targets from the caches, or says why there are none.
func (s *view) compute() ([]upstreams.Target, error) {
	svc, err := s.service()
	if err != nil {
		return nil, err
	}
	sp, err := servicePort(svc, s.ref.Port)
	if err != nil {
		return nil, s.inCluster(upstreams.Problem(upstreams.KindMisconfigured, err))
	}
	var targets []upstreams.Target
	switch s.sel.target {
	case targetClusterIP:
		targets, err = clusterIPTarget(svc, sp)
	case targetNodePort:
		targets, err = nodePortTargets(svc, sp, s.listNodes(), s.slices(), s.sel)
	default:
		targets, err = endpointTargets(svc, sp, s.slices(), s.sel)
	}
	if err != nil {
		return nil, s.inCluster(err)
	}
	return targets, nil
}

func (s *view) inCluster(err error) error {
	return fmt.Errorf("kubernetes cluster %q: %w", s.ns.cluster, err)
}

func (s *view) service() (*cachedService, error) {
	obj, ok, err := s.ns.indexer(services).GetByKey(s.ref.Namespace + "/" + s.ref.Name)
	if err == nil && ok {
		if svc, isSvc := obj.(*cachedService); isSvc {
			if svc.typ == corev1.ServiceTypeExternalName {
				return nil, upstreams.Problem(upstreams.KindMisconfigured, fmt.Errorf("kubernetes cluster %q: service %s/%s is of type ExternalName (%s) and has no endpoints; proxy to that name directly",
					s.ns.cluster, s.ref.Namespace, s.ref.Name, svc.externalName))
			}
			return svc, nil
		}
	}
	names := s.ns.indexer(services).ListKeys()
	const most = 10
	more := ""
	if len(names) > most {
		more = fmt.Sprintf(" and %d more", len(names)-most)
		names = names[:most]
	}
	matching := ""
	if s.ns.labels != "" {
		matching = fmt.Sprintf(" matching label_selector %q", s.ns.labels)
	}
	return nil, s.inCluster(upstreams.Problem(upstreams.KindNotFound, fmt.Errorf("service %s/%s not found (services in namespace %q%s: %v%s)",
		s.ref.Namespace, s.ref.Name, s.ref.Namespace, matching, names, more)))
}
func (s *view) slices() []*cachedSlice {
	objs, err := s.ns.indexer(endpointSlices).ByIndex(serviceIndex, s.ref.Name)
	if err != nil {
		return nil
	}
	out := make([]*cachedSlice, 0, len(objs))
	for _, o := range objs {
		if es, ok := o.(*cachedSlice); ok {
			out = append(out, es)
		}
	}
	return out
}

func (s *view) listNodes() []*corev1.Node {
	if s.nodes == nil {
		return nil
	}
	objs := s.nodes.indexer(nodes).List()
	out := make([]*corev1.Node, 0, len(objs))
	for _, o := range objs {
		if n, ok := o.(*corev1.Node); ok {
			out = append(out, n)
		}
	}
	return out
}
