package nacos

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/nacos-group/nacos-sdk-go/v2/model"
	"github.com/nacos-group/nacos-sdk-go/v2/vo"
	"go.uber.org/zap"

	"github.com/caddy-discovery/caddy-discovery/upstreams"
)

// Retry timings of subscriptions; tests shorten them. A subscription that
// failed on its own backs off from retryMin to retryMax; one that failed for
// want of a connection while the server is reachable retries from connRetry
// up to healthInterval, so that it goes through soon after the connection
// does.
var (
	retryMin  = time.Second
	retryMax  = 30 * time.Second
	connRetry = 200 * time.Millisecond
)

// watch is one pooled subscription to one service (group and name) through
// one client, shared by every source that references the service, whatever
// their cluster and metadata filters: each source filters the shared
// instance list itself. The SDK subscribes without clusters too (it filters
// clusters client-side), and subscribing twice to one service with different
// clusters breaks the first subscription (nacos-sdk-go #803).
type watch struct {
	c     *client
	ref   Reference // Namespace is the client's; Group is never ""
	param *vo.SubscribeParam

	ctx    context.Context
	cancel context.CancelFunc
	start  func()
	done   sync.WaitGroup
	kickCh chan struct{} // re-subscribe now
	diagCh chan struct{} // explain an empty list

	attempted bool // Subscribe was called; owned by run
	// established is set once a Subscribe succeeded; owned by run.
	established bool
	leaveErr    error // the final Unsubscribe's failure; read by Destruct once run has returned
	// subscribed is when the latest successful Subscribe started (unix
	// nanos), 0 after a failure; owned by run.
	subscribed int64

	subProblem atomic.Pointer[problem] // the latest subscribe failure
	// silence is set when a Subscribe succeeded but no list followed in
	// time, as when the server refuses it; written with mu held.
	silence   atomic.Pointer[problem]
	diagnosis atomic.Pointer[problem] // why the service has no instances

	mu        sync.Mutex // serializes publishing, so an older list never overwrites a newer one
	instances []model.Instance
	have      bool // a list has arrived
	views     map[*view]struct{}
	holding   atomic.Bool // some view keeps an older set under protect_threshold
}

func newWatch(c *client, ref Reference) *watch {
	ctx, cancel := context.WithCancel(context.Background())
	w := &watch{
		c:      c,
		ref:    ref,
		ctx:    ctx,
		cancel: cancel,
		kickCh: make(chan struct{}, 1),
		diagCh: make(chan struct{}, 1),
		views:  make(map[*view]struct{}),
	}
	// Unsubscribe finds the callback by &param.SubscribeCallback, so this
	// very value is used for every Subscribe and Unsubscribe.
	w.param = &vo.SubscribeParam{ServiceName: ref.Service, GroupName: ref.Group, SubscribeCallback: w.onPush}
	w.start = sync.OnceFunc(func() {
		if w.ctx.Err() == nil { // not after Destruct
			w.done.Go(w.run)
		}
	})
	c.addWatch(w)
	return w
}

// publishObserver, if set, is told how long each push took from the SDK
// callback to published snapshots.
var publishObserver atomic.Pointer[func(service string, d time.Duration)]

// SetPublishObserver registers f to be called after every instance list the
// SDK hands over has been published to the sources, with the time that took
// (Caddy's own share of the propagation delay). EXPERIMENTAL: for tests and
// benchmarks. f must be fast and safe for concurrent use; nil removes it.
func SetPublishObserver(f func(service string, d time.Duration)) {
	if f == nil {
		publishObserver.Store(nil)
		return
	}
	publishObserver.Store(&f)
}

// onPush is the SDK callback. It runs on the SDK's push goroutine, so it only
// copies the list and publishes it: no I/O, no waiting.
func (w *watch) onPush(instances []model.Instance, _ error) {
	start := time.Now()
	list := slices.Clone(instances)
	w.mu.Lock()
	w.instances, w.have = list, true
	if len(list) > 0 {
		w.diagnosis.Store(nil)
	}
	silence := w.silence.Swap(nil)
	w.publishLocked()
	w.mu.Unlock()
	if silence != nil {
		caddy.Log().Named("nacos").Info("received the first instance list of nacos service",
			zap.String("service", w.ref.String()), zap.NamedError("previous_error", silence.err))
	}
	if len(list) == 0 {
		select {
		case w.diagCh <- struct{}{}:
		default:
		}
	}
	took := time.Since(start)
	w.c.link.Observe(took)
	if f := publishObserver.Load(); f != nil {
		(*f)(w.ref.String(), took)
	}
}

// publish recomputes every view from the current list, e.g. after the
// connection state changed.
func (w *watch) publish() {
	w.mu.Lock()
	w.publishLocked()
	w.mu.Unlock()
}

func (w *watch) publishLocked() {
	problem := w.problem()
	holding := false
	for v := range w.views {
		if v.update(w.instances, w.have, problem) {
			holding = true
		}
	}
	w.holding.Store(holding)
}

// problem is what keeps the service from being current: the connection's
// problem, else the latest subscribe failure.
func (w *watch) problem() error {
	if err := w.c.connProblem(); err != nil {
		return err
	}
	if p := w.subProblem.Load(); p != nil {
		return p.err
	}
	if p := w.silence.Load(); p != nil {
		return p.err
	}
	return nil
}

func (w *watch) addView(v *view) {
	w.mu.Lock()
	w.views[v] = struct{}{}
	v.update(w.instances, w.have, w.problem())
	w.mu.Unlock()
}

func (w *watch) removeView(v *view) {
	w.mu.Lock()
	delete(w.views, v)
	w.mu.Unlock()
}

// kick asks for an immediate re-read of the service.
func (w *watch) kick() {
	select {
	case w.kickCh <- struct{}{}:
	default:
	}
}

// run subscribes once the client exists, retries failed subscriptions with
// backoff, and re-reads the service every reconcile interval and after every
// reconnect: a new Subscribe after Unsubscribe always fetches the list from
// the server and always calls back, so a push the SDK missed can never leave
// a stale set for longer than that.
//
// A Subscribe that fails for want of a connection is the connection's
// matter, reported by the client: it is neither logged nor shown as the
// subscription's problem. It is retried once the client reaches the server
// again (the client kicks), and while the server is reachable, soon and
// often, since only a request tells whether the SDK's gRPC connection is up.
func (w *watch) run() {
	defer w.leave()
	select {
	case <-w.c.ready:
	case <-w.ctx.Done():
		return
	}
	if w.c.nc == nil {
		return // the client's creation error is shown by the client
	}
	backoff, connBackoff := retryMin, connRetry
	next := time.Now() // when to (re)subscribe; zero: not planned
	// again is set when the next Subscribe makes up for a failed one or a
	// lost connection, not a routine reconcile: once established, such a
	// Subscribe is a restart for the metrics.
	again := false
	tick := time.NewTicker(healthInterval)
	defer tick.Stop()
	timer := time.NewTimer(0)
	defer timer.Stop()
	var silent <-chan time.Time // fires when a successful Subscribe got no list in time
	for {
		if !next.IsZero() && !time.Now().Before(next) {
			next = time.Time{}
			started := time.Now().UnixNano()
			switch err := w.subscribe(); {
			case err != nil && w.c.lacksConnection(err):
				w.subscribed = 0
				again = true
				if w.c.reachable.Load() {
					next = time.Now().Add(connBackoff)
					connBackoff = min(2*connBackoff, healthInterval)
				}
			case err != nil:
				w.subscribed = 0
				again = true
				w.setSubProblem(w.explain(err))
				next = time.Now().Add(backoff)
				backoff = min(2*backoff, retryMax)
			default:
				w.c.gotThrough()
				connBackoff = connRetry
				w.subscribed = started
				if w.established && again {
					w.c.link.WatchRestarted()
				}
				w.established, again = true, false
				w.clearSubProblem()
				w.mu.Lock()
				if !w.have {
					// A refused request (credentials, namespace) can end with
					// a nil error and no list: SDK v2.3.5 drops the server's
					// typed refusal. Give the list the server's timeout.
					silent = time.After(w.c.timeout())
				}
				w.mu.Unlock()
				backoff = retryMin
				if r := w.reconcileInterval(); r > 0 {
					next = time.Now().Add(r)
				}
			}
		}
		if !next.IsZero() {
			timer.Reset(time.Until(next))
		}
		select {
		case <-w.ctx.Done():
			return
		case <-w.kickCh:
			if w.subscribed != 0 && w.subscribed >= w.c.connected.Load() {
				break // already subscribed over the connection that came up
			}
			next, again = time.Now(), true
		case <-silent:
			silent = nil
			w.noList()
		case <-w.diagCh:
			w.diagnose()
		case <-tick.C:
			if w.holding.Load() && !w.c.protecting() {
				w.publish() // protect_threshold's grace is over
			}
		case <-timer.C:
		}
	}
}

// reconcileInterval is the smallest reconcile_interval among the sources
// that use the subscription; 0 (off) only if every one of them turned it off.
func (w *watch) reconcileInterval() time.Duration {
	w.mu.Lock()
	defer w.mu.Unlock()
	var r time.Duration
	for v := range w.views {
		if v.reconcile > 0 && (r == 0 || v.reconcile < r) {
			r = v.reconcile
		}
	}
	return r
}

// subscribe (re)subscribes with the original parameter. Before a second
// Subscribe the first is undone, or the SDK would call back twice.
func (w *watch) subscribe() error {
	if w.attempted {
		_ = guard("unsubscribing", func() error { return w.c.nc.Unsubscribe(w.param) })
	}
	w.attempted = true
	return guard("subscribing", func() error { return w.c.nc.Subscribe(w.param) })
}

func (w *watch) setSubProblem(err error) {
	old := w.subProblem.Swap(&problem{err: err})
	if old != nil && old.err.Error() == err.Error() {
		return
	}
	if w.c.connProblem() == nil { // connection problems are logged by the client
		caddy.Log().Named("nacos").Error("subscribing to nacos service failed; retrying with backoff",
			zap.String("service", w.ref.String()), zap.Error(err))
	}
	w.publish()
}

func (w *watch) clearSubProblem() {
	if old := w.subProblem.Swap(nil); old != nil {
		caddy.Log().Named("nacos").Info("subscribed to nacos service", zap.String("service", w.ref.String()),
			zap.NamedError("previous_error", old.err))
		w.publish()
	}
}

// noList reports a successful Subscribe that no instance list followed
// within the server's timeout, which is what a refused one looks like; it
// logs once, and the first list clears it.
func (w *watch) noList() {
	if w.c.connProblem() != nil {
		return // the connection problem explains it
	}
	ns := w.c.namespace
	if ns == "" {
		ns = "public"
	}
	var check string
	switch w.c.auth {
	case "username":
		check = "check username and password, and"
	case "access_key":
		check = "check access_key and secret_key, and"
	default:
		check = "if the server requires authentication, set username and password (or access_key and secret_key); check"
	}
	err := upstreams.Problem(upstreams.KindRefused, fmt.Errorf("%s: subscribed to service %s but the server sent no instance list within %s: it may have refused the request; "+
		"%s that namespace %q exists (use its ID, not its display name)", w.c.where, w.ref, w.c.timeout(), check, ns))
	w.mu.Lock()
	if w.have {
		w.mu.Unlock()
		return
	}
	old := w.silence.Swap(&problem{err: err})
	w.publishLocked()
	w.mu.Unlock()
	if old == nil || old.err.Error() != err.Error() {
		caddy.Log().Named("nacos").Error("nacos service sent no instance list; retrying",
			zap.String("service", w.ref.String()), zap.Error(err))
	}
}

// explain turns a failed subscription into an error that says what to fix,
// marked with its kind for the metrics. Server errors do not echo
// credentials.
func (w *watch) explain(err error) error {
	msg := strings.ToLower(err.Error())
	ns := w.c.namespace
	if ns == "" {
		ns = "public"
	}
	has := func(words ...string) bool {
		for _, s := range words {
			if strings.Contains(msg, s) {
				return true
			}
		}
		return false
	}
	switch {
	case has("403", "401", "forbidden", "unauthorized", "no right", "access denied", "token invalid", "token expired",
		"user not found", "unknown user", "authority", "auth failed", "invalid username", "password"):
		hint := "the server requires authentication: set username and password (or access_key and secret_key)"
		switch w.c.auth {
		case "username":
			hint = fmt.Sprintf("check username and password, and that the user may read namespace %q", ns)
		case "access_key":
			hint = fmt.Sprintf("check access_key and secret_key, and that they may read namespace %q", ns)
		}
		// Nacos answers 403 to unknown users and wrong passwords too: only
		// a refusal that names no credential problem is a user's missing
		// permission.
		kind := upstreams.KindUnauthorized
		if w.c.auth != "" && has("no right", "access denied", "forbidden", "authorization failed") &&
			!has("user not found", "unknown user", "token invalid", "token expired", "invalid username", "password") {
			kind = upstreams.KindForbidden
		}
		return upstreams.Problem(kind, fmt.Errorf("%s rejected the credentials subscribing to service %s: %s: %w", w.c.where, w.ref, hint, err))
	case has("namespace") && has("not exist", "not found", "invalid", "illegal"):
		return upstreams.Problem(upstreams.KindNotFound,
			fmt.Errorf("%s: namespace %q does not exist; use the namespace ID (not its display name): %w", w.c.where, ns, err))
	}
	return fmt.Errorf("%s: subscribing to service %s: %w", w.c.where, w.ref, err)
}

// diagnose finds out why the service has no instances at all: it does not
// exist in the group, or the namespace or group holds no service (a wrong
// namespace ID). It runs on the watch's goroutine, never in the callback.
func (w *watch) diagnose() {
	w.mu.Lock()
	empty := w.have && len(w.instances) == 0
	w.mu.Unlock()
	if !empty || !w.c.healthy.Load() {
		return
	}
	var list model.ServiceList
	err := guard("listing services", func() (err error) {
		list, err = w.c.nc.GetAllServicesInfo(vo.GetAllServiceInfoParam{GroupName: w.ref.Group, PageNo: 1, PageSize: 500})
		return err
	})
	if err != nil {
		return // the plain "no instances" error stands
	}
	ns := w.c.namespace
	if ns == "" {
		ns = "public"
	}
	var d error
	switch {
	case slices.Contains(list.Doms, w.ref.Service):
		return
	case list.Count == 0 && len(list.Doms) == 0:
		d = fmt.Errorf("namespace %q has no services in group %q: check namespace (the namespace ID, not its display name) and group", ns, w.ref.Group)
	default:
		names := list.Doms
		more := ""
		if len(names) > 10 {
			more = fmt.Sprintf(" and %d more", len(names)-10)
			names = names[:10]
		}
		d = fmt.Errorf("service %q is not registered in group %q of namespace %q (services there: %v%s): check the service name and group",
			w.ref.Service, w.ref.Group, ns, names, more)
	}
	w.diagnosis.Store(&problem{err: d})
	w.publish()
}

// unsubscribeWait bounds how long Destruct waits for the final Unsubscribe
// while the connection is healthy; tests shorten it.
var unsubscribeWait = time.Second

// leave ends the subscription on the watch's own goroutine, after its last
// Subscribe, so that the two can never cross. While the server is
// unreachable, Unsubscribe waits for the request timeout (the SDK drops the
// callback at once, before asking the server); when the client is being
// closed anyway, or is unreachable and this was its last subscription, the
// round-trip is skipped.
func (w *watch) leave() {
	if !w.attempted || w.c.nc == nil {
		return
	}
	if w.c.ctx.Err() != nil || !w.c.healthy.Load() && w.c.watchCount() == 0 {
		return
	}
	if err := guard("unsubscribing", func() error { return w.c.nc.Unsubscribe(w.param) }); err != nil && w.c.healthy.Load() {
		w.leaveErr = fmt.Errorf("%s: unsubscribing from service %s: %w", w.c.where, w.ref, err)
	}
}

// Destruct ends the subscription once its last source is gone. It runs
// synchronously in a reload or shutdown, so it never waits long: for at
// most unsubscribeWait while the connection is healthy, not at all while it
// is down (one Unsubscribe could take the whole request timeout). What is
// left runs in the background and the client waits for it before closing.
func (w *watch) Destruct() error {
	w.c.removeWatch(w)
	w.cancel()
	exited := make(chan struct{})
	w.c.leaving.Go(func() {
		w.done.Wait()
		close(exited)
	})
	if !w.c.healthy.Load() {
		select {
		case <-exited:
			return w.leaveErr
		default:
			return nil
		}
	}
	t := time.NewTimer(unsubscribeWait)
	defer t.Stop()
	select {
	case <-exited:
		return w.leaveErr
	case <-t.C:
		return nil
	}
}

// acquireWatch returns the pooled subscription to ref through c (whose key is
// clientKey), creating it if needed. The caller must release it with
// pool.Delete(key).
func acquireWatch(c *client, clientKey string, ref Reference) (w *watch, key string, err error) {
	key = clientKey + "/watch/" + ref.Group + "@@" + ref.Service
	v, _, err := pool.LoadOrNew(key, func() (caddy.Destructor, error) { return newWatch(c, ref), nil })
	if err != nil {
		return nil, "", err
	}
	return v.(*watch), key, nil
}
