package zookeeper

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-zookeeper/zk"
	"go.uber.org/zap"

	"github.com/caddy-discovery/caddy-discovery/upstreams"
)

// Backoff of a watch whose reads fail.
var (
	retryMin = time.Second
	retryMax = 30 * time.Second
)

// node is one child of a watched path: its name and its data.
type node struct {
	name string
	data []byte
}

// event is a fired ZooKeeper watch of a watch's path (child "") or of one
// child's data.
type event struct {
	child string
	zk.Event
}

// queue holds the fired ZooKeeper watches of one watch until its run
// takes them. The session's event callback adds to it, from the client's
// receiving goroutine, which must never wait: it also delivers the answers
// that run may be waiting for. It holds at most one event per armed
// ZooKeeper watch.
type queue struct {
	mu     sync.Mutex
	events []event
	wake   chan struct{} // signalled when events were added
}

func (q *queue) add(ev event) {
	q.mu.Lock()
	q.events = append(q.events, ev)
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// take returns the events added since the last take, in order.
func (q *queue) take() []event {
	q.mu.Lock()
	defer q.mu.Unlock()
	evs := q.events
	q.events = nil
	return evs
}

// watch follows the children of one path through one session, and each
// child's data, for every source that reads the path, whatever their
// format and selection: each source's view decodes the shared nodes.
// ZooKeeper's watches fire once: each is armed again as it fires (the
// children's when they change, a child's when its data changes), and all of
// them after the session expired. A periodic listing (relist_interval) is a
// safety net behind them. No goroutine waits on a ZooKeeper watch: the
// session's event callback hands every fired one to the watch of its path
// (see client.fired).
type watch struct {
	c    *client
	path string

	upstreams.Runner // lists and watches the path

	problem *upstreams.Condition // the watch's own failure, not the connection's
	fan     *upstreams.Fanout[[]node]
	kickCh  chan struct{} // list again, every watch lost: a new session
	fired   queue

	data  map[string][]byte // owned by run
	armed map[string]bool   // children whose data watch is set; owned by run
	// watching is set while the path's children (or existence) watch is
	// set: a listing then arms none, so that one change fires one event.
	// Owned by run.
	watching bool
}

func newWatch(c *client, path string) *watch {
	w := &watch{c: c, path: path, kickCh: make(chan struct{}, 1), fired: queue{wake: make(chan struct{}, 1)},
		data: map[string][]byte{}, armed: map[string]bool{}}
	w.problem = upstreams.NewCondition(c.log, "reading zookeeper nodes failed; retrying with backoff", "reading zookeeper nodes works again",
		zap.String("path", path), zap.String("server", c.st.where))
	w.fan = upstreams.NewFanout[[]node](
		upstreams.Pending(fmt.Errorf("%s: waiting for the first listing of %s", c.st.where, path)),
		c.problem, w.problem)
	w.Init()
	c.watch(w)
	return w
}

// start starts listing and watching the path.
func (w *watch) start() { w.Start(w.run) }

// kick has the watch list its path again, arming every watch anew.
func (w *watch) kick() {
	select {
	case w.kickCh <- struct{}{}:
	default:
	}
}

func (w *watch) run() {
	if !w.c.wait(w.Ctx.Done()) {
		return
	}
	var relist <-chan time.Time
	if w.c.st.relist > 0 {
		t := time.NewTicker(w.c.st.relist)
		defer t.Stop()
		relist = t.C
	}
	backoff := retryMin
	var retry <-chan time.Time
	list := func(all bool) {
		if err := w.list(all); err != nil {
			if !connectionError(err) {
				w.fan.Set(w.problem, w.explain(err))
			}
			retry = time.After(backoff)
			backoff = min(2*backoff, retryMax)
			return
		}
		backoff, retry = retryMin, nil
		w.fan.Set(w.problem, nil)
	}
	// A first look without watches, then the listing that arms them a
	// moment later (it reads everything again, so nothing is missed): a
	// service chosen per request that the look finds unknown is dropped
	// before ZooKeeper holds a watch for it, which it would keep until the
	// watch fires or the session ends (go-zookeeper cannot remove one).
	if w.peek() == nil && !w.Settle() {
		return
	}
	list(false)
	for {
		select {
		case <-w.Ctx.Done():
			return
		case <-retry:
			list(false)
		case <-relist:
			list(true)
		case <-w.kickCh:
			clear(w.armed) // the expired session took every watch with it
			w.watching = false
			list(false)
		case <-w.fired.wake:
			for _, ev := range w.fired.take() {
				if err := w.take(ev); err != nil {
					list(false)
					break
				}
			}
		}
	}
}

// peek reads the path's children and their data without arming a watch,
// and publishes the nodes.
func (w *watch) peek() error {
	children, _, err := w.c.conn.Children(w.path)
	if errors.Is(err, zk.ErrNoNode) {
		children, err = nil, nil
	}
	if err != nil {
		return err
	}
	clear(w.data)
	for _, name := range children {
		data, _, err := w.c.conn.Get(w.path + "/" + name)
		switch {
		case errors.Is(err, zk.ErrNoNode):
			continue
		case err != nil:
			return err
		}
		w.data[name] = data
	}
	w.publish()
	return nil
}

// list reads the path's children, arms the children watch, reads the data
// of every child without a data watch (all: every child) and arms one, and
// publishes the nodes.
func (w *watch) list(all bool) error {
	conn := w.c.conn
	var children []string
	var ch <-chan zk.Event
	var err error
	if w.watching {
		children, _, err = conn.Children(w.path)
	} else {
		children, _, ch, err = conn.ChildrenW(w.path)
	}
	if errors.Is(err, zk.ErrNoNode) {
		// No instance registered yet: wait for the path to appear (the
		// watch's event reaches w through the client; see client.fired).
		exists, _, _, err := conn.ExistsW(w.path)
		if err != nil {
			return err
		}
		if exists {
			return w.list(all)
		}
		w.watching = true // until the path appears
		clear(w.data)
		w.publish()
		return nil
	}
	if err != nil {
		return err
	}
	if ch != nil {
		w.watching = true
	}
	for name := range w.data {
		if !slices.Contains(children, name) {
			delete(w.data, name)
		}
	}
	for _, name := range children {
		if w.armed[name] && !all {
			continue
		}
		var data []byte
		var dch <-chan zk.Event
		if w.armed[name] {
			data, _, err = conn.Get(w.path + "/" + name)
		} else {
			data, _, dch, err = conn.GetW(w.path + "/" + name)
		}
		switch {
		case errors.Is(err, zk.ErrNoNode):
			delete(w.data, name) // gone since the listing; the children watch says so
			continue
		case err != nil:
			return err
		}
		w.data[name] = data
		if dch != nil {
			w.armed[name] = true
		}
	}
	w.publish()
	return nil
}

// take takes in a fired watch: the children changed (list again), or a
// child's data changed or it was deleted. An event of a ZooKeeper watch the
// watch has not set (another watch's on the same path, one already handled)
// is ignored.
func (w *watch) take(ev event) error {
	switch {
	case ev.child == "" && !w.watching, ev.child != "" && !w.armed[ev.child]:
		return nil
	case ev.child == "":
		w.watching = false
		if ev.Type == zk.EventNotWatching {
			return nil // the session expired: the client kicks once a new one is up
		}
		return w.list(false)
	case ev.Type == zk.EventNodeDeleted:
		delete(w.armed, ev.child)
		delete(w.data, ev.child)
		w.publish()
	case ev.Type == zk.EventNotWatching:
		delete(w.armed, ev.child)
	default: // the data changed: read it, and watch again
		delete(w.armed, ev.child)
		data, _, _, err := w.c.conn.GetW(w.path + "/" + ev.child)
		if errors.Is(err, zk.ErrNoNode) {
			delete(w.data, ev.child)
		} else if err != nil {
			return err
		} else {
			w.data[ev.child] = data
			w.armed[ev.child] = true
		}
		w.publish()
	}
	return nil
}

// publish hands the nodes, sorted by name, to every source's view. It is
// called once the reads are answered, and observes its own time.
func (w *watch) publish() {
	start := time.Now()
	nodes := make([]node, 0, len(w.data))
	for name, data := range w.data {
		nodes = append(nodes, node{name: name, data: data})
	}
	slices.SortFunc(nodes, func(a, b node) int { return strings.Compare(a.name, b.name) })
	w.fan.List(nodes)
	w.c.link.Observe(time.Since(start))
}

// explain turns a failed read into the watch's problem.
func (w *watch) explain(err error) error {
	if errors.Is(err, zk.ErrNoAuth) {
		return upstreams.Problem(upstreams.KindForbidden, fmt.Errorf("%s: the ACL of %s does not let Caddy read it (no auth); set username and password to a digest user it allows", w.c.st.where, w.path))
	}
	return fmt.Errorf("%s: reading %s: %w", w.c.st.where, w.path, err)
}

// Destruct ends the watch once its last source is gone; it returns at once.
func (w *watch) Destruct() error {
	w.c.unwatch(w)
	w.Stop()
	return nil
}

// acquireWatch returns the pooled watch of path through c, creating it if
// needed, and holds it for src.
func acquireWatch(src *upstreams.Source, c *client, path string) (*watch, error) {
	return upstreams.Acquire(src, c.key+"/watch/"+path, func() (*watch, error) { return newWatch(c, path), nil })
}
