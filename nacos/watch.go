package nacos

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/nacos-group/nacos-sdk-go/v2/model"
	"github.com/nacos-group/nacos-sdk-go/v2/vo"
	"go.uber.org/zap"

	"github.com/caddy-discovery/caddy-discovery/upstreams"
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
	// after is closed once the previous subscription to the same service
	// through the same client has left (its final Unsubscribe done): the
	// first Subscribe waits for it, so that the two cannot cross in the
	// SDK. Nil if there was none.
	after <-chan struct{}
	// subscribed is when the latest successful Subscribe started (unix
	// nanos), 0 after a failure; owned by run.
	subscribed int64

	sub *upstreams.Condition // the latest Subscribe failure
	// silence is set when a Subscribe succeeded but no list followed in
	// time, as when the server refuses it; set with mu held.
	silence   *upstreams.Condition
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
	log, svc := caddy.Log().Named("nacos"), zap.String("service", ref.String())
	w.sub = upstreams.NewCondition(log, "subscribing to nacos service failed; retrying with backoff", "subscribed to nacos service", svc)
	w.silence = upstreams.NewCondition(log, "nacos service sent no instance list; retrying", "received the first instance list of nacos service", svc)
	// Unsubscribe finds the callback by &param.SubscribeCallback, so this
	// very value is used for every Subscribe and Unsubscribe.
	w.param = &vo.SubscribeParam{ServiceName: ref.Service, GroupName: ref.Group, SubscribeCallback: w.onPush}
	w.start = sync.OnceFunc(func() {
		if w.ctx.Err() == nil { // not after Destruct
			w.done.Go(w.run)
		}
	})
	w.after = c.addWatch(w)
	return w
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
	w.silence.Set(nil)
	w.listLocked()
	w.troubledLocked()
	w.mu.Unlock()
	if len(list) == 0 {
		select {
		case w.diagCh <- struct{}{}:
		default:
		}
	}
	w.c.link.Observe(time.Since(start))
}

// relist publishes the current list to every view again, e.g. once
// protect_threshold's grace is over or an empty list has been diagnosed.
func (w *watch) relist() {
	w.mu.Lock()
	w.listLocked()
	w.mu.Unlock()
}

// listLocked publishes what each view selects from the current list. The
// caller holds w.mu.
func (w *watch) listLocked() {
	if !w.have {
		return
	}
	protecting := w.c.protecting()
	holding := false
	for v := range w.views {
		holding = w.listTo(v, protecting) || holding
	}
	w.holding.Store(holding)
}

// listTo publishes v's selection from the current list and reports whether
// protect_threshold keeps v's last targets. The caller holds w.mu.
func (w *watch) listTo(v *view, protecting bool) (held bool) {
	c := v.choose(w.instances, protecting)
	if c.started {
		caddy.Log().Named("nacos").Warn("keeping the last known instances: the update would leave too few while the nacos connection is unhealthy or just restored (protect_threshold)",
			zap.String("service", w.ref.String()), zap.Int("kept", len(c.targets)), zap.Int("update", c.update),
			zap.Float64("protect_threshold", v.protect))
	}
	var why error
	if len(c.targets) == 0 {
		why = w.noTargets(v.filter, c.skipped)
	}
	v.pub.List(c.targets, why)
	return c.held
}

// troubled publishes the service's current trouble to every view.
func (w *watch) troubled() {
	w.mu.Lock()
	w.troubledLocked()
	w.mu.Unlock()
}

func (w *watch) troubledLocked() {
	t := w.troubleLocked()
	for v := range w.views {
		v.pub.Trouble(t)
	}
}

// troubleLocked is what keeps the service's list from being current: the
// connection's problem, a failing subscription, a subscription that no list
// followed, or the first list still awaited. The caller holds w.mu.
func (w *watch) troubleLocked() error {
	for _, err := range []error{w.c.connProblem(), w.sub.Err(), w.silence.Err()} {
		if err != nil {
			return err
		}
	}
	if !w.have {
		return upstreams.Pending(fmt.Errorf("%s: waiting for the first instance list of service %s", w.c.where, w.ref))
	}
	return nil
}

func (w *watch) addView(v *view) {
	w.mu.Lock()
	w.views[v] = struct{}{}
	v.pub.Trouble(w.troubleLocked())
	if w.have && w.listTo(v, w.c.protecting()) {
		w.holding.Store(true)
	}
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
	if w.after != nil {
		select {
		case <-w.after:
		case <-w.ctx.Done():
			return
		}
	}
	tn := w.c.tuning
	backoff, connBackoff := tn.retryMin, tn.connRetry
	next := time.Now() // when to (re)subscribe; zero: not planned
	// again is set when the next Subscribe makes up for a failed one or a
	// lost connection, not a routine reconcile: once established, such a
	// Subscribe is a restart for the metrics.
	again := false
	tick := time.NewTicker(tn.healthInterval)
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
					connBackoff = min(2*connBackoff, tn.healthInterval)
				}
			case err != nil:
				w.subscribed = 0
				again = true
				w.setSubProblem(w.explain(err))
				next = time.Now().Add(backoff)
				backoff = min(2*backoff, tn.retryMax)
			default:
				w.c.gotThrough()
				connBackoff = tn.connRetry
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
				backoff = tn.retryMin
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
				w.relist() // protect_threshold's grace is over
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
//
// Both run under the client's sdk mutex, which the SDK's push handling and
// re-subscription on connecting hold too: Unsubscribe drops the SDK's cached
// list and our callback, and a list the SDK processed between the two calls
// would be cached with no callback to call, so the Subscribe after it would
// find nothing new and the change would wait for the next re-read.
func (w *watch) subscribe() error {
	w.c.sdk.Lock()
	defer w.c.sdk.Unlock()
	if w.attempted {
		_ = guard("unsubscribing", func() error { return w.c.nc.Unsubscribe(w.param) })
	}
	w.attempted = true
	return guard("subscribing", func() error { return w.c.nc.Subscribe(w.param) })
}

func (w *watch) setSubProblem(err error) {
	if w.sub.Set(err) {
		w.troubled()
	}
}

func (w *watch) clearSubProblem() { w.setSubProblem(nil) }

// noList reports a successful Subscribe that no instance list followed
// within the server's timeout, which is what a refused one looks like; the
// first list clears it.
func (w *watch) noList() {
	if w.c.connProblem() != nil {
		return // the connection problem explains it
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.have && w.silence.Set(w.silentRefusal()) {
		w.troubledLocked()
	}
}

// leave ends the subscription on the watch's own goroutine, after its last
// Subscribe, so that the two can never cross. While the server is
// unreachable, Unsubscribe waits for the request timeout (the SDK drops the
// callback at once, before asking the server); when the client is being
// closed anyway, or is unreachable and this was its last subscription, the
// round-trip is skipped. Nobody waits for it, so a failure is logged.
func (w *watch) leave() {
	if !w.attempted || w.c.nc == nil {
		return
	}
	if w.c.ctx.Err() != nil || !w.c.healthy.Load() && w.c.watchCount() == 0 {
		return
	}
	w.c.sdk.Lock()
	err := guard("unsubscribing", func() error { return w.c.nc.Unsubscribe(w.param) })
	w.c.sdk.Unlock()
	if err != nil && w.c.healthy.Load() {
		caddy.Log().Named("nacos").Warn("unsubscribing from nacos service failed", zap.String("service", w.ref.String()),
			zap.String("server", w.c.where), zap.Error(err))
	}
}

// Destruct ends the subscription once its last source is gone. It runs
// synchronously in a reload or shutdown, so it waits for nothing: the final
// Unsubscribe, which a hung or unreachable server holds up for the request
// timeout, runs in the background. A new subscription to the same service
// waits for it before subscribing, and the client for all of them before
// closing.
func (w *watch) Destruct() error {
	exited := w.c.removeWatch(w)
	w.cancel()
	w.c.leaving.Go(func() {
		w.done.Wait()
		w.c.left(w.ref, exited)
	})
	return nil
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
