package kubernetes

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilnet "k8s.io/apimachinery/pkg/util/net"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/caddy-discovery/caddy-discovery/upstreams"
)

// resource is one kind of object an informer set lists and watches.
type resource struct {
	group, name string // as in RBAC rules: "discovery.k8s.io", "endpointslices"
	object      runtime.Object
	list        func(ctx context.Context, c kubernetes.Interface, ns string, o metav1.ListOptions) (runtime.Object, error)
	watch       func(ctx context.Context, c kubernetes.Interface, ns string, o metav1.ListOptions) (watch.Interface, error)
	// key says which service an object concerns; "" means every service.
	key       func(obj any) string
	transform cache.TransformFunc
}

// indexers are the informer's indexes of r: EndpointSlices by their
// Service.
func (r resource) indexers() cache.Indexers {
	if r.name != endpointSlices.name {
		return nil
	}
	return cache.Indexers{serviceIndex: func(obj any) ([]string, error) { return []string{r.key(obj)}, nil }}
}

func (r resource) qualified() string {
	if r.group == "" {
		return r.name
	}
	return r.name + "." + r.group
}

var (
	services = resource{
		name:   "services",
		object: &corev1.Service{},
		list: func(ctx context.Context, c kubernetes.Interface, ns string, o metav1.ListOptions) (runtime.Object, error) {
			return c.CoreV1().Services(ns).List(ctx, o)
		},
		watch: func(ctx context.Context, c kubernetes.Interface, ns string, o metav1.ListOptions) (watch.Interface, error) {
			return c.CoreV1().Services(ns).Watch(ctx, o)
		},
		key: func(obj any) string {
			if svc, ok := obj.(*cachedService); ok {
				return svc.Name
			}
			return ""
		},
		transform: slimService,
	}
	endpointSlices = resource{
		group:  discoveryv1.GroupName,
		name:   "endpointslices",
		object: &discoveryv1.EndpointSlice{},
		list: func(ctx context.Context, c kubernetes.Interface, ns string, o metav1.ListOptions) (runtime.Object, error) {
			return c.DiscoveryV1().EndpointSlices(ns).List(ctx, o)
		},
		watch: func(ctx context.Context, c kubernetes.Interface, ns string, o metav1.ListOptions) (watch.Interface, error) {
			return c.DiscoveryV1().EndpointSlices(ns).Watch(ctx, o)
		},
		key: func(obj any) string {
			if es, ok := obj.(*cachedSlice); ok {
				return es.service
			}
			return ""
		},
		transform: slimEndpointSlice,
	}
	nodes = resource{
		name:   "nodes",
		object: &corev1.Node{},
		list: func(ctx context.Context, c kubernetes.Interface, _ string, o metav1.ListOptions) (runtime.Object, error) {
			return c.CoreV1().Nodes().List(ctx, o)
		},
		watch: func(ctx context.Context, c kubernetes.Interface, _ string, o metav1.ListOptions) (watch.Interface, error) {
			return c.CoreV1().Nodes().Watch(ctx, o)
		},
		key: func(any) string { return "" },
		transform: func(obj any) (any, error) {
			if n, ok := obj.(*corev1.Node); ok {
				n.ManagedFields = nil
				n.Status.Images = nil // large, and of no use here
			}
			return obj, nil
		},
	}
)

// serviceIndex indexes EndpointSlices by the Service they belong to.
const serviceIndex = "service"

// informerSet lists and watches some resources of one cluster, in one
// namespace (Services and EndpointSlices, those matching a label selector)
// or cluster-wide (Nodes), for every view that needs them. It is created
// without any request to the API server; start begins the watches.
type informerSet struct {
	cluster   string // the cluster's name, for messages
	namespace string // "" for cluster-scoped resources
	labels    string // the label selector the API server applies, "" for none
	resources []resource
	informers []cache.SharedIndexInformer
	problems  []*upstreams.Condition // per resource: its latest list or watch failure
	// watched is set once a resource's first watch started; broken when,
	// after that, a watch failed or a list had to be made again (after an
	// error or an expiry), so that the next watch is a restart.
	watched, broken []atomic.Bool

	// link reports the set's state to the cluster's connection metrics;
	// linkMu serializes its updates, so that the latest state wins.
	link    *upstreams.Link
	linkMu  sync.Mutex
	created time.Time // change triggers before it are the initial list's

	upstreams.Runner // runs the informers

	synced atomic.Bool

	views upstreams.Members[*view]
}

func newInformerSet(cluster, namespace, labels string, client kubernetes.Interface, rs ...resource) (*informerSet, error) {
	s := &informerSet{
		cluster:   cluster,
		namespace: namespace,
		labels:    labels,
		resources: rs,
		problems:  make([]*upstreams.Condition, len(rs)),
		watched:   make([]atomic.Bool, len(rs)),
		broken:    make([]atomic.Bool, len(rs)),
		link:      upstreams.NewLink("k8s", cluster, propagationSeconds),
		created:   time.Now(),
	}
	log := caddy.Log().Named("kubernetes")
	for i, r := range rs {
		s.problems[i] = upstreams.NewCondition(log, "watching the API server failed; retrying with backoff", "watching the API server works again",
			zap.String("cluster", cluster), zap.String("namespace", namespace), zap.String("resource", r.qualified()))
		lw := &cache.ListWatch{
			ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
				o.LabelSelector = labels
				if s.watched[i].Load() {
					s.broken[i].Store(true) // a watch ended in an error or an expiry
				}
				var obj runtime.Object
				err := s.untilAnswered(ctx, i, r, func() (err error) {
					obj, err = r.list(ctx, client, namespace, o)
					return err
				})
				return obj, err
			},
			// A problem ends when a watch starts, not when a list works: with
			// list but not watch permission, clearing on the list would log
			// the problem again on every retry.
			WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
				o.LabelSelector = labels
				var w watch.Interface
				err := s.untilAnswered(ctx, i, r, func() (err error) {
					w, err = r.watch(ctx, client, namespace, o)
					return err
				})
				if err != nil {
					if s.watched[i].Load() {
						s.broken[i].Store(true)
					}
					return w, err
				}
				// A watch the server ended on its timeout is restarted at
				// once, without a list: routine, and not counted.
				if s.watched[i].Swap(true) && s.broken[i].Swap(false) {
					s.link.WatchRestarted()
				}
				s.setProblem(i, nil)
				return w, err
			},
		}
		opts := cache.SharedIndexInformerOptions{ObjectDescription: r.qualified(), Indexers: r.indexers()}
		inf := cache.NewSharedIndexInformerWithOptions(listThenWatch{lw}, r.object, opts)
		if err := inf.SetTransform(r.transform); err != nil {
			s.link.Close()
			return nil, err
		}
		if err := inf.SetWatchErrorHandlerWithContext(func(ctx context.Context, _ *cache.Reflector, err error) {
			if routineWatchEnd(ctx, err) {
				return // the reflector lists again, as client-go's default handler expects
			}
			s.setProblem(i, explainWatchError(cluster, namespace, r, err))
		}); err != nil {
			s.link.Close()
			return nil, err
		}
		if _, err := inf.AddEventHandler(s.handler(r)); err != nil {
			s.link.Close()
			return nil, err
		}
		s.informers = append(s.informers, inf)
	}
	s.Init()
	return s, nil
}

// listThenWatch has the reflector list, then watch, and never use
// client-go's WatchList (a watch that streams the objects first): a watch
// whose connection times out, as with a hung API server, comes back from
// client-go as an empty watch without an error (rest.Request.Watch), and
// the reflector retries a WatchList that way without end, so untilAnswered
// would never see the timeout and the source would never report the
// server hung. A list reports it.
type listThenWatch struct{ *cache.ListWatch }

// IsWatchListSemanticsUnSupported tells the reflector not to use WatchList.
func (listThenWatch) IsWatchListSemanticsUnSupported() bool { return true }

// While the API server refuses connections (it is down or restarting) or
// does not answer in time (it hangs), a list or watch is retried from
// refusedRetryMin, doubling up to refusedRetryMax.
const (
	refusedRetryMin = 100 * time.Millisecond
	refusedRetryMax = time.Second
)

// untilAnswered runs request, a list or watch of resource i, until the API
// server answers it (successfully or not) or ctx ends. A refused
// connection or a timeout is reported as the resource's problem at once
// and retried within a second. Left to itself, the reflector retries a
// refused watch with a backoff growing to 30 s and never reports it
// (client-go tools/cache/reflector.go, isWatchErrorRetriable), and after a
// timeout (a hung server: TLS handshake timeout) lists again after the
// same backoff: Caddy would not say that the API server is gone, or would
// see its return seconds late. Retrying keeps a request in flight, which
// the server answers as soon as it can again.
func (s *informerSet) untilAnswered(ctx context.Context, i int, r resource, request func() error) error {
	wait := refusedRetryMin
	var t *time.Timer
	for {
		err := request()
		var netErr net.Error
		if err == nil || !utilnet.IsConnectionRefused(err) && !(errors.As(err, &netErr) && netErr.Timeout()) {
			return err
		}
		s.setProblem(i, explainWatchError(s.cluster, s.namespace, r, err))
		if t == nil {
			t = time.NewTimer(wait)
			defer t.Stop()
		} else {
			t.Reset(wait)
		}
		select {
		case <-ctx.Done():
			return err
		case <-t.C:
		}
		wait = min(2*wait, refusedRetryMax)
	}
}

// routineWatchEnd reports the ends of a watch that are part of normal
// operation: an expired resource version (410 Gone, after compaction), a
// connection closed by the server, or shutdown.
func routineWatchEnd(ctx context.Context, err error) bool {
	return ctx.Err() != nil || apierrors.IsResourceExpired(err) || apierrors.IsGone(err) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, context.Canceled)
}

func (s *informerSet) handler(r resource) cache.ResourceEventHandler {
	return cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) { s.changedAt(r.key(obj), s.triggerTime(nil, obj)) },
		UpdateFunc: func(oldObj, newObj any) {
			oldKey, newKey := r.key(oldObj), r.key(newObj)
			s.changedAt(newKey, s.triggerTime(oldObj, newObj))
			if oldKey != newKey {
				s.changed(oldKey)
			}
		},
		DeleteFunc: func(obj any) {
			if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = d.Obj
			}
			s.changed(r.key(obj))
		},
	}
}

// start starts the informers, and refreshes every view once all of
// them have listed their objects.
func (s *informerSet) start() {
	fns := make([]func(), 0, len(s.informers)+1)
	for _, inf := range s.informers {
		fns = append(fns, func() { inf.RunWithContext(s.Ctx) })
	}
	s.Start(append(fns, s.awaitSync)...)
}

// awaitSync refreshes every view once every informer has listed
// its objects.
func (s *informerSet) awaitSync() {
	hasSynced := make([]cache.InformerSynced, len(s.informers))
	for i, inf := range s.informers {
		hasSynced[i] = inf.HasSynced
	}
	if !cache.WaitForCacheSync(s.Ctx.Done(), hasSynced...) {
		return
	}
	s.synced.Store(true)
	s.reportConnected()
	s.views.Each(nil, (*view).troubled)
	s.changed("")
}

// Destruct stops the watches once the last view is gone.
func (s *informerSet) Destruct() error {
	s.Stop()
	s.link.Close()
	return nil
}

func (s *informerSet) addView(v *view)    { s.views.Add(v) }
func (s *informerSet) removeView(v *view) { s.views.Remove(v) }

// changed refreshes the views of the named service, or all of them
// for "".
func (s *informerSet) changed(service string) { s.changedAt(service, time.Time{}) }

// changedAt is changed for a change that trigger (if not zero) caused: once
// the views of the service have published it, the time since then
// is its propagation delay.
func (s *informerSet) changedAt(service string, trigger time.Time) {
	if !s.synced.Load() {
		return // the first sync refreshes everything
	}
	n := s.views.Each(func(sub *view) bool { return service == "" || sub.ref.Name == service }, (*view).refresh)
	if n > 0 && !trigger.IsZero() {
		s.link.Observe(time.Since(trigger))
	}
}

// state reports whether every informer has listed its objects once, and the
// problem to show: the latest list/watch failure, or, before the first list,
// that it is still awaited.
func (s *informerSet) state() (synced bool, problem error) {
	for _, c := range s.problems {
		if problem = c.Err(); problem != nil {
			break
		}
	}
	synced = s.synced.Load()
	if !synced && problem == nil {
		names := make([]string, len(s.resources))
		for i, r := range s.resources {
			names[i] = r.name
		}
		what := strings.Join(names, " and ")
		where := "cluster-wide"
		if s.namespace != "" {
			where = fmt.Sprintf("in namespace %q", s.namespace)
		}
		if s.labels != "" {
			where += fmt.Sprintf(" with labels %q", s.labels)
		}
		problem = upstreams.Pending(fmt.Errorf("kubernetes cluster %q: waiting for the first list of %s %s", s.cluster, what, where))
	}
	return synced, problem
}

// reportConnected tells the cluster's connection metrics whether the set
// works: it has listed everything once and no list or watch fails now.
func (s *informerSet) reportConnected() {
	s.linkMu.Lock()
	defer s.linkMu.Unlock()
	up := s.synced.Load()
	for _, c := range s.problems {
		up = up && c.Err() == nil
	}
	s.link.SetConnected(up)
}

// setProblem records a list or watch failure of resource i, or its end
// (nil). Its condition logs it once, not on every retry; the views
// show it as their trouble.
func (s *informerSet) setProblem(i int, err error) {
	changed := s.problems[i].Set(err)
	s.reportConnected()
	if changed {
		s.views.Each(nil, (*view).troubled)
	}
}

// indexer is the local cache of r, or nil if the set does not watch r.
func (s *informerSet) indexer(r resource) cache.Indexer {
	for i, x := range s.resources {
		if x.name == r.name {
			return s.informers[i].GetIndexer()
		}
	}
	return nil
}
