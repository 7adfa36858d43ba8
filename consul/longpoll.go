package consul

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/hashicorp/consul/api"
	"go.uber.org/zap"
	"golang.org/x/time/rate"

	"github.com/caddy-discovery/caddy-discovery/upstreams"
)

// Timings of the long-polls; tests shorten them.
var (
	// waitTime is how long one blocking query may wait for a change. Consul
	// adds up to 1/16 of it at random; requestGrace covers the round trip
	// on top. A connection that hangs is noticed after all of it.
	waitTime     = time.Minute
	requestGrace = 10 * time.Second
	// A failed query is retried after retryMin, doubling up to retryMax,
	// each with up to half of it taken off at random so that gateways
	// that lost Consul together do not come back in step.
	retryMin = time.Second
	retryMax = 30 * time.Second
	// The rate limit of one long-poll, as Consul's blocking query docs
	// recommend: a token bucket with a burst of 2, so that in the happy
	// case every change is fetched at once, and a result that churns (or
	// an index that does not move, a Consul bug the docs warn about)
	// degrades into one query per rateEvery rather than a busy loop. The
	// docs' example is 15 s; a gateway that keeps proxying to an instance
	// Consul already took out fails requests meanwhile, so it polls a
	// churning service once a second.
	rateEvery = time.Second
	rateBurst = 2
	// diagnoseTimeout bounds the one request that explains an empty list.
	diagnoseTimeout = 5 * time.Second
)

// errRestart cancels an ongoing long-poll that must start again at once,
// with the same index: the token changed.
var errRestart = errors.New("restarting the long-poll")

// longPoll is one pooled long-poll: Consul's blocking query on the passing
// instances of one query (service, datacenter, tags, filter, namespace,
// partition) through one client, shared by every source that asks the same
// query, whatever config it belongs to. Each of those sources has its own
// publisher, to which the long-poll's fanout hands the same targets.
type longPoll struct {
	c       *client
	q       query
	limiter *rate.Limiter

	upstreams.Runner // runs the long-poll

	reqMu     sync.Mutex
	reqCancel context.CancelCauseFunc // of the ongoing request; nil between requests
	kickCh    chan struct{}           // cuts a backoff short: the token changed

	// problem is the long-poll's own failure (a refused or failed query),
	// not the connection's; hidden is set while ACLs hide some instances.
	problem *upstreams.Condition
	hidden  *upstreams.Condition
	// badAddrs is set while some passing instances have an address Caddy
	// cannot dial; it is only logged.
	badAddrs *upstreams.Condition

	// fan hands the lists and the trouble to every source of the query.
	fan *upstreams.Fanout[upstreams.Listing]
}

func newLongPoll(c *client, q query) *longPoll {
	w := &longPoll{
		c:       c,
		q:       q,
		limiter: rate.NewLimiter(rate.Every(rateEvery), rateBurst),
		kickCh:  make(chan struct{}, 1),
	}
	log, svc := c.log, zap.String("service", q.name())
	w.problem = upstreams.NewCondition(log, "consul long-poll failed; retrying with backoff", "consul long-poll works again", svc, zap.String("server", c.where))
	w.hidden = upstreams.NewCondition(log, "consul ACLs hide instances of the service", "consul ACLs no longer hide instances of the service", svc)
	w.badAddrs = upstreams.NewCondition(log, "skipping consul instances that have no usable address", "every passing consul instance has a usable address again", svc)
	// The trouble: the connection's problem, the long-poll's, ACLs hiding
	// instances, or the first answer still awaited.
	w.fan = upstreams.NewFanout[upstreams.Listing](
		upstreams.Pending(fmt.Errorf("%s: waiting for the first answer about %s", c.where, q.subject())),
		c.problem, w.problem, w.hidden)
	w.Init()
	c.polls.Add(w)
	return w
}

// start starts the long-poll.
func (w *longPoll) start() { w.Start(w.run) }

// run is the long-poll: a blocking query at the latest index, again and
// again. It handles the index as Consul's blocking query docs say: an index
// that goes backwards (a snapshot restore, a restarted dev agent) starts over
// from 0, a full read; an index of 0 becomes 1, which always blocks. After
// a failure it starts over from 0 too, since the server that answers next
// may not be the one that gave the index.
func (w *longPoll) run() {
	pollRunning(w.c.conn, 1)
	defer pollRunning(w.c.conn, -1)
	var index uint64
	established, failed := false, false
	backoff := retryMin
	for {
		if err := w.limiter.Wait(w.Ctx); err != nil {
			return
		}
		i, ac := w.c.api()
		entries, meta, err := w.poll(ac, index)
		received := time.Now()
		switch {
		case w.Ctx.Err() != nil:
			return
		case errors.Is(err, errRestart):
			select {
			case <-w.kickCh: // this restart's
			default:
			}
			continue
		case err != nil:
			failed, index = true, 0
			w.fail(i, err)
			select {
			case <-w.Ctx.Done():
				return
			case <-w.kickCh:
				backoff = retryMin // a new token: try it now
			case <-time.After(backoff/2 + rand.N(backoff/2+1)):
				backoff = min(2*backoff, retryMax)
			}
			continue
		}
		backoff = retryMin
		w.c.reached()
		if failed && established {
			w.c.link.WatchRestarted()
		}
		changed := !established || failed || meta.LastIndex != index
		first := !established
		established, failed = true, false
		w.fan.Set(w.problem, nil)
		if changed {
			w.publish(ac, entries, meta, received)
		}
		index = nextIndex(index, meta.LastIndex)
		// Nothing is missed: a change meanwhile answers the next query at
		// once.
		if first && !w.Settle() {
			return
		}
	}
}

// nextIndex is the index of the next blocking query after one at prev
// answered with got (Consul's blocking query docs, "Implementation
// Details"): 0 (a full read) if the index went backwards, at least 1 so
// that the next query blocks.
func nextIndex(prev, got uint64) uint64 {
	switch {
	case got < prev:
		return 0
	case got == 0:
		return 1
	}
	return got
}

// poll sends one blocking query at index (0: answer at once) to ac.
func (w *longPoll) poll(ac *api.Client, index uint64) ([]*api.ServiceEntry, *api.QueryMeta, error) {
	ctx, cancel := context.WithCancelCause(w.Ctx)
	defer cancel(nil)
	ctx, stop := context.WithTimeout(ctx, pollTimeout())
	defer stop()
	w.reqMu.Lock()
	w.reqCancel = cancel
	w.reqMu.Unlock()
	defer func() {
		w.reqMu.Lock()
		w.reqCancel = nil
		w.reqMu.Unlock()
	}()
	opts := &api.QueryOptions{Datacenter: w.q.datacenter, Filter: w.q.filter, WaitIndex: index, WaitTime: waitTime}
	opts = opts.WithContext(withScope(ctx, scope{namespace: w.q.namespace, partition: w.q.partition}))
	entries, meta, err := ac.Health().ServiceMultipleTags(w.q.service, w.q.tags, true, opts)
	if err != nil && errors.Is(context.Cause(ctx), errRestart) {
		return nil, nil, errRestart
	}
	if err == nil && meta == nil {
		err = errors.New("no query metadata in the answer")
	}
	return entries, meta, err
}

// restart ends the ongoing long-poll, or the wait before a retry, and
// queries again at once.
func (w *longPoll) restart() {
	w.reqMu.Lock()
	defer w.reqMu.Unlock()
	if w.reqCancel != nil {
		w.reqCancel(errRestart)
	}
	select {
	case w.kickCh <- struct{}{}:
	default:
	}
}

// pollTimeout bounds one long-poll: Consul's wait, the up to 1/16 of it
// that Consul adds at random, and the round trip.
func pollTimeout() time.Duration { return waitTime + waitTime/16 + requestGrace }

// fail reports a failed query to address i: a failure to reach Consul is
// the connection's problem, anything else the long-poll's own.
func (w *longPoll) fail(i int, err error) {
	if w.c.unreached(i, err, pollTimeout()) {
		return
	}
	w.fan.Set(w.problem, w.explain(err))
}

// publish turns an answer into targets and publishes them to every source.
// Without targets it finds out why first.
func (w *longPoll) publish(ac *api.Client, entries []*api.ServiceEntry, meta *api.QueryMeta, received time.Time) {
	targets, skip := targetsOf(entries)
	var why error
	took := time.Duration(0) // the diagnosis's round trip, which is Consul's share
	switch {
	case len(targets) > 0:
	case skip.badAddr > 0:
		why = upstreams.Problem(upstreams.KindNoBackends, fmt.Errorf("%s: %s has no usable instance: %s", w.c.where, w.q.subject(), skip))
	default:
		start := time.Now()
		why = w.diagnose(ac, meta.ResultsFilteredByACLs)
		took = time.Since(start)
	}
	var hidden error
	if len(targets) > 0 && meta.ResultsFilteredByACLs {
		hidden = w.aclHides(true)
	}
	var bad error
	if len(targets) > 0 && skip.badAddr > 0 {
		bad = fmt.Errorf("%s: %s: %s", w.c.where, w.q.subject(), skip)
	}
	w.badAddrs.Set(bad)
	w.hidden.Set(hidden)
	w.fan.List(upstreams.Listing{Targets: targets, Why: why}) // the first answer ends the wait for it
	w.c.link.Observe(time.Since(received) - took)
}

// Destruct ends the long-poll once its last source is gone. The ongoing
// request is cancelled, so it returns at once.
func (w *longPoll) Destruct() error {
	w.c.polls.Remove(w)
	w.Stop()
	return nil
}

// acquireLongPoll returns the pooled long-poll of q through c, creating it if
// needed, and holds it for src.
func acquireLongPoll(src *upstreams.Source, c *client, q query) (*longPoll, error) {
	return upstreams.Acquire(src, c.key+"/long-poll/"+q.key(), func() (*longPoll, error) { return newLongPoll(c, q), nil })
}
