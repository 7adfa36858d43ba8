package upstreams

import (
	"fmt"
	"slices"
	"sync"

	"go.uber.org/zap"
)

// Publisher publishes one service of one upstream source. It owns the
// service's Cell (and through it, once registered, the service's metrics and
// the weights of its targets) and the service's problems. A registry pushes
// facts into it, one way:
//
//   - List: a new list of usable targets, and, when it has none, why;
//   - Trouble: what keeps the list from being current (the first list still
//     awaited, a connection lost, a watch or a subscription failing), and nil
//     once that is over.
//
// Every fact publishes a new snapshot. The list stays in use through
// trouble: the last known backends keep serving. The snapshot's error is
// the trouble, or, without targets, why there are none (with the trouble, if
// any, after it).
//
// The publisher logs the service's own problem, once when it begins or
// changes and once when the service has backends again; it does not log
// trouble, which whatever reports it (a Condition) logs once for all the
// services it concerns.
type Publisher struct {
	cell    Cell
	log     *zap.Logger
	service string

	answered chan struct{} // closed by the first List

	mu      sync.Mutex
	listed  bool
	targets []Target
	why     error
	trouble error
	logged  string // the problem last logged, "" if none
}

// NewPublisher returns the publisher of service (as log lines name it),
// logging to log. Until the first List, its snapshot has no targets and the
// error says that the first list is awaited.
func NewPublisher(log *zap.Logger, service string) *Publisher {
	p := &Publisher{log: log, service: service, answered: make(chan struct{})}
	p.cell.Store(p.snapshot())
	return p
}

// Answered is closed once the first list has been published.
func (p *Publisher) Answered() <-chan struct{} { return p.answered }

// List publishes a new list of usable targets. Without targets, why says
// why there are none (the service does not exist, every instance is
// unhealthy, …); a nil why is reported as ErrNoTargets.
func (p *Publisher) List(targets []Target, why error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.listed {
		defer close(p.answered)
	}
	p.listed = true
	p.targets = slices.Clone(targets)
	p.why = nil
	if len(targets) == 0 {
		p.why = cmpErr(why, ErrNoTargets)
	}
	p.cell.Store(p.snapshot())
	p.note()
}

// Trouble publishes what keeps the list from being current, or its end
// (nil). It keeps the last list.
func (p *Publisher) Trouble(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.trouble == nil && err == nil || p.trouble != nil && err != nil && p.trouble.Error() == err.Error() {
		return // no news: a retry failed as the last one did
	}
	p.trouble = err
	p.cell.Store(p.snapshot())
	p.note()
}

// Cell is the cell the request path reads and Register registers.
func (p *Publisher) Cell() *Cell { return &p.cell }

// Load returns the current snapshot; it is never nil.
func (p *Publisher) Load() *Snapshot { return p.cell.Load() }

// snapshot makes the snapshot of the current facts. The caller holds p.mu.
func (p *Publisher) snapshot() *Snapshot {
	var err error
	switch {
	case !p.listed:
		err = cmpErr(p.trouble, Pending(fmt.Errorf("%s: waiting for the first list", p.service)))
	case p.why != nil && p.trouble != nil:
		err = fmt.Errorf("%w; %w", p.why, p.trouble)
	case p.why != nil:
		err = p.why
	default:
		err = p.trouble
	}
	return NewSnapshot(p.targets, err)
}

// note logs the service's own problem when it begins or changes, and its
// end. While there is trouble, the trouble explains the state: nothing is
// logged, and a problem already logged stays logged until it ends. The
// caller holds p.mu.
func (p *Publisher) note() {
	switch {
	case !p.listed || p.trouble != nil:
	case p.why != nil:
		if msg := p.why.Error(); msg != p.logged {
			p.log.Warn("service has no usable backends", zap.String("service", p.service), zap.Error(p.why))
			p.logged = msg
		}
	case p.logged != "":
		p.log.Info("service has backends again", zap.String("service", p.service), zap.Int("backends", len(p.targets)))
		p.logged = ""
	}
}

// cmpErr returns the first non-nil error.
func cmpErr(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}
