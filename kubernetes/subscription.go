package kubernetes

import (
	"fmt"
	"sync"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"

	"github.com/caddy-discovery/caddy-discovery/upstreams"
)

// subscription is one upstream source's view of one Service port. Informer
// event handlers refresh it; GetUpstreams reads its cell.
type subscription struct {
	ref   Reference
	sel   selection
	ns    *informerSet // Services and EndpointSlices of ref.Namespace
	nodes *informerSet // Nodes, for targetNodePort only

	cell upstreams.Cell

	mu          sync.Mutex // serializes refresh, so an older view never overwrites a newer one
	lastProblem string     // the Service problem last logged, "" if none
}

// refresh recomputes the targets from the informers' caches and publishes them.
func (s *subscription) refresh() {
	s.mu.Lock()
	defer s.mu.Unlock()

	targets, err := s.compute()
	s.cell.Store(upstreams.NewSnapshot(targets, err))

	// Problems of the watches themselves (and the wait for the first list)
	// are logged once by their informer set; only the Service's own are
	// logged here, when they start and end.
	problem := ""
	if err != nil && s.synced() && s.watchProblem() == nil {
		problem = err.Error()
	}
	if problem != s.lastProblem && (problem != "" || err == nil) {
		log := caddy.Log().Named("kubernetes")
		if problem == "" {
			log.Info("service has backends again", zap.String("service", s.ref.String()), zap.Int("backends", len(targets)))
		} else {
			log.Warn("service has no usable backends", zap.String("service", s.ref.String()), zap.Error(err))
		}
		s.lastProblem = problem
	}
}

// synced reports whether every informer set has listed its objects once.
func (s *subscription) synced() bool {
	for _, set := range []*informerSet{s.ns, s.nodes} {
		if set != nil && !set.synced.Load() {
			return false
		}
	}
	return true
}

func (s *subscription) watchProblem() error {
	for _, set := range []*informerSet{s.ns, s.nodes} {
		if set == nil {
			continue
		}
		if synced, problem := set.state(); synced && problem != nil {
			return problem
		}
	}
	return nil
}

func (s *subscription) compute() ([]upstreams.Target, error) {
	for _, set := range []*informerSet{s.ns, s.nodes} {
		if set == nil {
			continue
		}
		if synced, problem := set.state(); !synced {
			return nil, problem
		}
	}
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
	// A watch problem after the first sync leaves the caches as they were
	// last seen: serve them, and report the problem in case there are none.
	return targets, s.watchProblem()
}

func (s *subscription) inCluster(err error) error {
	if problem := s.watchProblem(); problem != nil {
		return fmt.Errorf("%w (%w)", err, problem)
	}
	return fmt.Errorf("kubernetes cluster %q: %w", s.ns.cluster, err)
}

func (s *subscription) service() (*corev1.Service, error) {
	obj, ok, err := s.ns.indexer(services).GetByKey(s.ref.Namespace + "/" + s.ref.Name)
	if err == nil && ok {
		if svc, isSvc := obj.(*corev1.Service); isSvc {
			if svc.Spec.Type == corev1.ServiceTypeExternalName {
				return nil, upstreams.Problem(upstreams.KindMisconfigured, fmt.Errorf("kubernetes cluster %q: service %s/%s is of type ExternalName (%s) and has no endpoints; proxy to that name directly",
					s.ns.cluster, s.ref.Namespace, s.ref.Name, svc.Spec.ExternalName))
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
	return nil, s.inCluster(upstreams.Problem(upstreams.KindNotFound, fmt.Errorf("service %s/%s not found (services in namespace %q: %v%s)",
		s.ref.Namespace, s.ref.Name, s.ref.Namespace, names, more)))
}

func (s *subscription) slices() []*discoveryv1.EndpointSlice {
	objs, err := s.ns.indexer(endpointSlices).ByIndex(serviceIndex, s.ref.Name)
	if err != nil {
		return nil
	}
	out := make([]*discoveryv1.EndpointSlice, 0, len(objs))
	for _, o := range objs {
		if es, ok := o.(*discoveryv1.EndpointSlice); ok {
			out = append(out, es)
		}
	}
	return out
}

func (s *subscription) listNodes() []*corev1.Node {
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
