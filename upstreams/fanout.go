package upstreams

import "sync"

// Receiver is a source's end of a Fanout: it takes each new list (and
// makes its own selection from it, if any) and the trouble that keeps the
// list from being current. A *Publisher receives a Listing.
type Receiver[L any] interface {
	Receive(list L)
	Trouble(err error)
}

// Listing is a list of targets and, when it has none, why: what a
// Publisher receives from a Fanout whose sources all take the same targets.
type Listing struct {
	Targets []Target
	Why     error
}

// Receive publishes l (see List).
func (p *Publisher) Receive(l Listing) { p.List(l.Targets, l.Why) }

// Fanout hands what one registry query (a long-poll, a subscription, a
// watch) learns to every source that asks it, whatever config the source
// belongs to: each new list, and the query's trouble, which is the first
// of its conditions that has a problem (the connection's, then the
// query's own), else, until the first list, pending. A source added later
// gets the current state at once, so a reload's new source serves what
// the old one did.
//
// It is safe for concurrent use; it calls receivers with its lock held,
// so that they see lists and trouble in order, and an older list never
// overwrites a newer one.
type Fanout[L any] struct {
	pending    error
	conditions []*Condition

	mu        sync.Mutex
	listed    bool
	last      L
	receivers map[Receiver[L]]struct{}
}

// NewFanout returns a fanout without receivers whose trouble is the first
// problem of conditions, or pending (made with Pending) until the first
// list.
func NewFanout[L any](pending error, conditions ...*Condition) *Fanout[L] {
	return &Fanout[L]{pending: pending, conditions: conditions, receivers: make(map[Receiver[L]]struct{})}
}

// Add makes r one of the receivers and gives it the current trouble and
// list, if any.
func (f *Fanout[L]) Add(r Receiver[L]) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.receivers[r] = struct{}{}
	r.Trouble(f.troubleLocked())
	if f.listed {
		r.Receive(f.last)
	}
}

// Remove takes r out of the receivers.
func (f *Fanout[L]) Remove(r Receiver[L]) {
	f.mu.Lock()
	delete(f.receivers, r)
	f.mu.Unlock()
}

// Join adds r until src is cleaned up: how a source's view joins the
// query it reads.
func (f *Fanout[L]) Join(src *Source, r Receiver[L]) {
	f.Add(r)
	src.OnCleanup(func() { f.Remove(r) })
}

// List hands a new list to every receiver, each first told the trouble as
// it stands with the list (the first list ends the wait for it), so that
// no snapshot pairs the new list with a trouble it ended.
func (f *Fanout[L]) List(list L) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.listed, f.last = true, list
	t := f.troubleLocked()
	for r := range f.receivers {
		r.Trouble(t)
		r.Receive(list)
	}
}

// Relist hands the last list to every receiver again, as when what they
// select from it changes with time; nothing before the first list.
func (f *Fanout[L]) Relist() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.listed {
		for r := range f.receivers {
			r.Receive(f.last)
		}
	}
}

// Set records the latest outcome of one of the fanout's conditions and, if
// that changed it, hands the trouble to every receiver.
func (f *Fanout[L]) Set(c *Condition, err error) {
	if c.Set(err) {
		f.Troubled()
	}
}

// Troubled hands the current trouble to every receiver: call it when a
// condition changed, such as the connection's.
func (f *Fanout[L]) Troubled() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.troubledLocked()
}

func (f *Fanout[L]) troubledLocked() {
	t := f.troubleLocked()
	for r := range f.receivers {
		r.Trouble(t)
	}
}

// Listed reports whether a list has arrived.
func (f *Fanout[L]) Listed() bool {
	_, ok := f.Last()
	return ok
}

// Last returns the last list, and whether one has arrived.
func (f *Fanout[L]) Last() (L, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.last, f.listed
}

// Each calls fn on every receiver, with the fanout's lock held.
func (f *Fanout[L]) Each(fn func(Receiver[L])) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for r := range f.receivers {
		fn(r)
	}
}

func (f *Fanout[L]) troubleLocked() error {
	for _, c := range f.conditions {
		if err := c.Err(); err != nil {
			return err
		}
	}
	if !f.listed {
		return f.pending
	}
	return nil
}
