package eureka

import (
	"context"
	"errors"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"
)

// DefaultInterval is how often a Poller asks for changes when
// PollerOptions.Interval is 0: eureka-client's default is 30 s, which is
// long for a gateway.
const DefaultInterval = 5 * time.Second

// DefaultMaxBackoff caps the wait between failed polls when
// PollerOptions.MaxBackoff is 0.
const DefaultMaxBackoff = time.Minute

// PollerOptions configures a Poller.
type PollerOptions struct {
	// Interval is how often the poller asks the servers for changes.
	// Default: 5s.
	Interval time.Duration
	// MaxBackoff caps the wait after failed polls, which doubles from
	// Interval with each failure in a row. Default: 1m, or Interval if
	// that is longer.
	MaxBackoff time.Duration
	// Logger receives the poller's log lines: a failure when polls start
	// failing or fail differently, the recovery, and hash code mismatches.
	// Default: none.
	Logger *zap.Logger
	// OnFetch, if set, is called from Run's goroutine after each request
	// for the whole registry (full) or for a delta, with its outcome, for
	// metrics; not for a request cut short by the end of Run's context.
	OnFetch func(full bool, err error)
}

// Update is what a subscriber of an application learns.
type Update struct {
	// App is the application's name, in upper case.
	App string
	// Instances are the application's instances, sorted by id, as the
	// last successful poll left them; nil before the first one, or if the
	// registry holds none. Callers must not change them.
	Instances []Instance
	// Err is the last poll's failure, nil if it succeeded. Instances stay
	// as they were while polls fail.
	Err error
}

// Poller keeps a local copy of one server set's registry current, as
// eureka-client's DiscoveryClient does (full fetch, then deltas reconciled by
// hash code), and pushes each subscribed application's instances to its
// subscribers when they, or the poll's failure, change.
type Poller struct {
	client     *Client
	interval   time.Duration
	maxBackoff time.Duration
	logger     *zap.Logger
	onFetch    func(full bool, err error)

	mu   sync.Mutex
	subs map[*subscription]struct{}
	wake chan struct{} // a new subscriber waits for its first update

	// Owned by Run's goroutine.
	apps     *Applications // nil until the first full fetch succeeds
	needFull bool          // the copy is known to differ from the server's
	err      error         // the last poll's failure
}

type subscription struct {
	app string // in upper case
	fn  func(Update)

	mu     sync.Mutex // held while fn runs, so that cancel waits for it
	closed bool

	// Owned by Run's goroutine.
	sent      bool
	instances []Instance
	errText   string
}

// NewPoller returns a poller of the client's servers; Run starts it.
func NewPoller(client *Client, opts PollerOptions) *Poller {
	p := &Poller{
		client:     client,
		interval:   opts.Interval,
		maxBackoff: opts.MaxBackoff,
		logger:     opts.Logger,
		onFetch:    opts.OnFetch,
		subs:       make(map[*subscription]struct{}),
		wake:       make(chan struct{}, 1),
	}
	if p.interval <= 0 {
		p.interval = DefaultInterval
	}
	if p.maxBackoff <= 0 {
		p.maxBackoff = DefaultMaxBackoff
	}
	p.maxBackoff = max(p.maxBackoff, p.interval)
	if p.logger == nil {
		p.logger = zap.NewNop()
	}
	return p
}

// Subscribe has fn called with the application's instances after the poll
// that follows (or, once the poller has polled, right away), then whenever
// they or the poll's failure change. Calls come from Run's goroutine, one at
// a time; fn should return quickly. The name is matched without regard to
// case. After cancel returns, fn is not running and is not called again;
// cancel must not be called from fn.
func (p *Poller) Subscribe(app string, fn func(Update)) (cancel func()) {
	s := &subscription{app: strings.ToUpper(app), fn: fn}
	p.mu.Lock()
	p.subs[s] = struct{}{}
	p.mu.Unlock()
	select {
	case p.wake <- struct{}{}:
	default:
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			p.mu.Lock()
			delete(p.subs, s)
			p.mu.Unlock()
			s.mu.Lock()
			s.closed = true
			s.mu.Unlock()
		})
	}
}

// Run polls until ctx ends, then closes the client's idle connections and
// returns. It starts no goroutines. Run it once per poller.
func (p *Poller) Run(ctx context.Context) {
	defer p.client.CloseIdleConnections()
	failures := 0
	for {
		err := p.poll(ctx)
		if ctx.Err() != nil {
			return
		}
		p.report(err, failures)
		wait := p.interval
		if err != nil {
			failures++
			wait = p.backoff(failures)
		} else {
			failures = 0
		}
		p.err = err
		p.deliver()
		timer := time.NewTimer(wait)
	waiting:
		for {
			select {
			case <-ctx.Done():
				timer.Stop()
				return
			case <-p.wake:
				p.deliver()
			case <-timer.C:
				break waiting
			}
		}
	}
}

// report notes a failure (again only when its text changes) and the
// recovery at debug level: subscribers get every failure in their updates,
// and the upstream source reports it to the user, once, as the
// connection's problem (an upstreams.Condition).
func (p *Poller) report(err error, failures int) {
	switch {
	case err != nil && (p.err == nil || p.err.Error() != err.Error()):
		p.logger.Debug("polling eureka failed", zap.Error(err))
	case err == nil && failures > 0:
		p.logger.Debug("polling eureka recovered", zap.Int("failed_polls", failures))
	}
}

// backoff is the wait after the given number of failed polls in a row:
// Interval doubled with each, capped at MaxBackoff, less up to a fifth at
// random so that gateways restarted together spread out.
func (p *Poller) backoff(failures int) time.Duration {
	d := p.interval
	for i := 1; i < failures && d < p.maxBackoff; i++ {
		d *= 2
	}
	d = min(d, p.maxBackoff)
	return d - time.Duration(rand.Int64N(int64(d)/5+1))
}

// poll brings the local copy up to date: a full fetch the first time, when
// the copy is empty (as eureka-client does) or known to be wrong, else a
// delta, reconciled by a full fetch when the hash codes differ.
func (p *Poller) poll(ctx context.Context) error {
	if p.apps == nil || p.needFull || p.apps.Len() == 0 {
		return p.full(ctx)
	}
	delta, err := p.client.Delta(ctx)
	p.fetched(ctx, false, err)
	if err != nil {
		// eureka-client fetches everything when the server does not
		// answer a delta with 200 (servers may refuse deltas).
		var status *StatusError
		if ctx.Err() == nil && errors.As(err, &status) {
			if ferr := p.full(ctx); ferr != nil {
				return ferr
			}
			p.logger.Debug("eureka server refused a delta, fetched the whole registry", zap.Error(err))
			return nil
		}
		return err
	}
	p.apps.Apply(delta)
	if local := p.apps.ReconcileHashCode(); local != delta.HashCode {
		p.logger.Info("eureka registry hash codes differ after a delta, fetching the whole registry",
			zap.String("local", local), zap.String("server", delta.HashCode))
		if err := p.full(ctx); err != nil {
			p.needFull = true
			return err
		}
	}
	return nil
}

func (p *Poller) full(ctx context.Context) error {
	apps, err := p.client.Apps(ctx)
	p.fetched(ctx, true, err)
	if err != nil {
		return err
	}
	p.apps, p.needFull = apps, false
	return nil
}

// fetched reports a request's outcome to OnFetch.
func (p *Poller) fetched(ctx context.Context, full bool, err error) {
	if p.onFetch != nil && ctx.Err() == nil {
		p.onFetch(full, err)
	}
}

// deliver hands each subscriber whose application's instances, or the
// poll's failure, changed since its last update the new state.
func (p *Poller) deliver() {
	if p.apps == nil && p.err == nil {
		return // not polled yet
	}
	p.mu.Lock()
	subs := make([]*subscription, 0, len(p.subs))
	for s := range p.subs {
		subs = append(subs, s)
	}
	p.mu.Unlock()
	errText := ""
	if p.err != nil {
		errText = p.err.Error()
	}
	byApp := make(map[string][]Instance)
	for _, s := range subs {
		instances, ok := byApp[s.app]
		if !ok && p.apps != nil {
			instances = p.apps.Instances(s.app)
			byApp[s.app] = instances
		}
		if s.sent && s.errText == errText && equalInstances(s.instances, instances) {
			continue
		}
		s.mu.Lock()
		if !s.closed {
			s.sent, s.instances, s.errText = true, instances, errText
			s.fn(Update{App: s.app, Instances: instances, Err: p.err})
		}
		s.mu.Unlock()
	}
}
