package nacos

import (
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nacos-group/nacos-sdk-go/v2/model"
	"github.com/nacos-group/nacos-sdk-go/v2/vo"
	"go.uber.org/zap"

	"github.com/caddy-discovery/caddy-discovery/upstreams"
)

// subscription is one pooled subscription to one service (group and name) through
// one client, shared by every source that references the service, whatever
// their cluster and metadata filters: each source's view selects from the
// shared instance list itself. The SDK subscribes without clusters too (it
// filters clusters client-side), and subscribing twice to one service with
// different clusters breaks the first subscription (nacos-sdk-go #803).
type subscription struct {
	c     *client
	ref   Reference // Namespace is the client's; Group is never ""
	param *vo.SubscribeParam

	upstreams.Runner               // subscribes and re-subscribes
	kickCh           chan struct{} // re-subscribe now
	diagCh           chan struct{} // explain an empty list

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
	// time, as when the server refuses it.
	silence   *upstreams.Condition
	diagnosis atomic.Pointer[problem] // why the service has no instances

	// mu pairs a list's arrival with the end of silence, so that a late
	// noList never marks a service that has its list.
	mu sync.Mutex
	// held is set while an empty first list waits for its diagnosis, so
	// that the sources' first answer says at once whether the service
	// exists: a service chosen per request that Nacos does not have gets
	// the denied status from its first request, not a 503. Guarded by mu.
	held bool
	// fan hands the lists and the trouble to every source's view.
	fan *upstreams.Fanout[[]model.Instance]
}

func newSubscription(c *client, ref Reference) *subscription {
	w := &subscription{
		c:      c,
		ref:    ref,
		kickCh: make(chan struct{}, 1),
		diagCh: make(chan struct{}, 1),
	}
	log, svc := c.log, zap.String("service", ref.String())
	w.sub = upstreams.NewCondition(log, "subscribing to nacos service failed; retrying with backoff", "subscribed to nacos service", svc)
	w.silence = upstreams.NewCondition(log, "nacos service sent no instance list; retrying", "received the first instance list of nacos service", svc)
	// The trouble: the connection's problem, a failing subscription, a
	// subscription that no list followed, or the first list still awaited.
	w.fan = upstreams.NewFanout[[]model.Instance](
		upstreams.Pending(fmt.Errorf("%s: waiting for the first instance list of service %s", c.where, ref)),
		c.problem, w.sub, w.silence)
	// Unsubscribe finds the callback by &param.SubscribeCallback, so this
	// very value is used for every Subscribe and Unsubscribe.
	w.param = &vo.SubscribeParam{ServiceName: ref.Service, GroupName: ref.Group, SubscribeCallback: w.onPush}
	w.Init()
	w.after = c.addSubscription(w)
	return w
}

// onPush is the SDK callback. It runs on the SDK's push goroutine, so it only
// copies the list and publishes it: no I/O, no waiting.
func (w *subscription) onPush(instances []model.Instance, _ error) {
	start := time.Now()
	list := slices.Clone(instances)
	if len(list) > 0 {
		w.diagnosis.Store(nil)
	}
	w.mu.Lock()
	w.silence.Set(nil)
	if len(list) == 0 && !w.fan.Listed() {
		w.held = true // published by diagnose
	} else {
		w.held = false
		w.fan.List(list) // hands the trouble on too: the list may have ended it
	}
	w.mu.Unlock()
	if len(list) == 0 {
		select {
		case w.diagCh <- struct{}{}:
		default:
		}
	}
	w.c.link.Observe(time.Since(start))
}

// addView makes v one of the subscription's sources; it gets the current
// list and trouble at once.
func (w *subscription) addView(v *view) {
	v.w = w
	w.fan.Add(v)
}

func (w *subscription) removeView(v *view) { w.fan.Remove(v) }

// holding reports whether protect_threshold keeps some view's last targets.
func (w *subscription) holding() (held bool) {
	w.fan.Each(func(r upstreams.Receiver[[]model.Instance]) { held = held || r.(*view).holding })
	return held
}

// kick asks for an immediate re-read of the service.
func (w *subscription) kick() {
	select {
	case w.kickCh <- struct{}{}:
	default:
	}
}

// plan is when run subscribes next, and its backoffs.
type plan struct {
	next time.Time // zero: not planned
	// again is set when the next Subscribe makes up for a failed one or a
	// lost connection, not a routine reconcile: once established, such a
	// Subscribe is a restart for the metrics.
	again bool
	// paced is set once the next Subscribe, a routine re-read, has its
	// turn in the client's pace.
	paced                bool
	backoff, connBackoff time.Duration
}

// start starts subscribing.
func (w *subscription) start() { w.Start(w.run) }

// run subscribes once the client exists, retries failed subscriptions with
// backoff, and re-reads the service every reconcile interval and after every
// reconnect: a new Subscribe after Unsubscribe always fetches the list from
// the server and always calls back, so a push the SDK missed can never leave
// a stale set for longer than that.
func (w *subscription) run() {
	defer w.leave()
	if !w.waitForClient() {
		return
	}
	tn := w.c.tuning
	p := plan{next: time.Now(), backoff: tn.retryMin, connBackoff: tn.connRetry}
	timer := time.NewTimer(0)
	defer timer.Stop()
	var silent <-chan time.Time // fires when a successful Subscribe got no list in time
	for {
		if w.due(&p) && w.subscribeNow(&p) && !w.fan.Listed() {
			// A refused request (credentials, namespace) can end with a nil
			// error and no list: SDK v2.3.5 drops the server's typed
			// refusal. Give the list the server's timeout.
			silent = time.After(w.c.timeout())
		}
		if !p.next.IsZero() {
			timer.Reset(time.Until(p.next))
		}
		select {
		case <-w.Ctx.Done():
			return
		case <-w.kickCh:
			if w.subscribed == 0 || w.subscribed < w.c.connected.Load() {
				p.next, p.again = time.Now(), true // not yet subscribed over the connection that came up
			}
		case <-silent:
			silent = nil
			w.noList()
		case <-w.diagCh:
			w.diagnose()
		case <-timer.C:
		}
	}
}

// due reports whether the planned Subscribe may go now. A routine re-read
// (reconcile_interval) first takes its turn in the client's pace, which
// may plan it later: the first Subscribe, and those that make up for a
// failure or a lost connection, never wait for it.
func (w *subscription) due(p *plan) bool {
	if p.next.IsZero() || time.Now().Before(p.next) {
		return false
	}
	if !w.established || p.again || p.paced {
		return true
	}
	p.paced = true
	if d := w.c.pace.Reserve().Delay(); d > 0 {
		p.next = time.Now().Add(d)
		return false
	}
	return true
}

// waitForClient waits until the client exists and the previous
// subscription to the service has left, and reports whether the subscription can
// subscribe: not after Destruct, nor without an SDK client (whose creation
// error the client shows).
func (w *subscription) waitForClient() bool {
	select {
	case <-w.c.ready:
	case <-w.Ctx.Done():
		return false
	}
	if w.c.nc == nil {
		return false
	}
	if w.after != nil {
		select {
		case <-w.after:
		case <-w.Ctx.Done():
			return false
		}
	}
	return true
}

// subscribeNow (re)subscribes, plans the next attempt in p, and reports
// whether Subscribe succeeded.
//
// A Subscribe that fails for want of a connection is the connection's
// matter, reported by the client: it is neither logged nor shown as the
// subscription's problem. It is retried once the client reaches the server
// again (the client kicks), and while the server is reachable, soon and
// often, since only a request tells whether the SDK's gRPC connection is up.
func (w *subscription) subscribeNow(p *plan) bool {
	tn := w.c.tuning
	p.next = time.Time{}
	started := time.Now().UnixNano()
	switch err := w.subscribe(); {
	case err != nil && w.c.lacksConnection(err):
		w.subscribed, p.again = 0, true
		if w.c.reachable.Load() {
			p.next = time.Now().Add(p.connBackoff)
			p.connBackoff = min(2*p.connBackoff, tn.healthInterval)
		}
		return false
	case err != nil:
		w.subscribed, p.again = 0, true
		w.fan.Set(w.sub, w.explain(err))
		p.next = time.Now().Add(p.backoff)
		p.backoff = min(2*p.backoff, tn.retryMax)
		return false
	}
	w.c.gotThrough()
	if w.established && p.again {
		w.c.link.WatchRestarted()
	}
	w.established, w.subscribed = true, started
	*p = plan{backoff: tn.retryMin, connBackoff: tn.connRetry}
	w.fan.Set(w.sub, nil)
	if r := w.reconcileInterval(); r > 0 {
		p.next = time.Now().Add(r)
	}
	return true
}

// reconcileInterval is the smallest reconcile_interval among the sources
// that use the subscription; 0 (off) only if every one of them turned it off.
func (w *subscription) reconcileInterval() (r time.Duration) {
	w.fan.Each(func(rc upstreams.Receiver[[]model.Instance]) {
		if v := rc.(*view); v.reconcile > 0 && (r == 0 || v.reconcile < r) {
			r = v.reconcile
		}
	})
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
func (w *subscription) subscribe() error {
	w.c.sdk.Lock()
	defer w.c.sdk.Unlock()
	if w.attempted {
		_ = guard("unsubscribing", func() error { return w.c.nc.Unsubscribe(w.param) })
	}
	w.attempted = true
	return guard("subscribing", func() error { return w.c.nc.Subscribe(w.param) })
}

// noList reports a successful Subscribe that no instance list followed
// within the server's timeout, which is what a refused one looks like; the
// first list clears it.
func (w *subscription) noList() {
	if w.c.connProblem() != nil {
		return // the connection problem explains it
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.fan.Listed() && !w.held {
		w.fan.Set(w.silence, w.silentRefusal())
	}
}

// leave ends the subscription on its own goroutine, after its last
// Subscribe, so that the two can never cross. While the server is
// unreachable, Unsubscribe waits for the request timeout (the SDK drops the
// callback at once, before asking the server); when the client is being
// closed anyway, or is unreachable and this was its last subscription, the
// round-trip is skipped. Nobody waits for it, so a failure is logged.
func (w *subscription) leave() {
	if !w.attempted || w.c.nc == nil {
		return
	}
	if w.c.Ctx.Err() != nil || !w.c.healthy.Load() && w.c.subscriptions.Len() == 0 {
		return
	}
	w.c.sdk.Lock()
	err := guard("unsubscribing", func() error { return w.c.nc.Unsubscribe(w.param) })
	w.c.sdk.Unlock()
	if err != nil && w.c.healthy.Load() {
		w.c.log.Warn("unsubscribing from nacos service failed", zap.String("service", w.ref.String()),
			zap.String("server", w.c.where), zap.Error(err))
	}
}

// Destruct ends the subscription once its last source is gone. It runs
// synchronously in a reload or shutdown, so it waits for nothing: the final
// Unsubscribe, which a hung or unreachable server holds up for the request
// timeout, runs in the background. A new subscription to the same service
// waits for it before subscribing, and the client for all of them before
// closing.
func (w *subscription) Destruct() error {
	exited := w.c.removeSubscription(w)
	w.Cancel()
	w.c.leaving.Go(func() {
		w.Wait()
		w.c.left(w.ref, exited)
	})
	return nil
}

// acquireSubscription returns the pooled subscription to ref through c, creating
// it if needed, and holds it for src.
func acquireSubscription(src *upstreams.Source, c *client, ref Reference) (*subscription, error) {
	return upstreams.Acquire(src, c.key+"/subscription/"+ref.Group+"@@"+ref.Service, func() (*subscription, error) { return newSubscription(c, ref), nil })
}
