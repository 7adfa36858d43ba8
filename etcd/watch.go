package etcd

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/caddy-discovery/caddy-discovery/upstreams"
)

// kv is one key under a watched prefix and its value.
type kv struct {
	key   string
	value []byte
}

// watch is one pooled etcd watch of one key prefix through one client,
// shared by every source that reads the prefix, whatever their format and
// metadata selection: each source's view decodes the shared keys itself.
// It reads the prefix once, then follows it with a watch from the next
// revision; when the watch cannot go on (its revision was compacted, the
// member lost its leader, the watch was cancelled) it reads the prefix
// again. Leases make a dead registrar's keys disappear, which the watch
// follows like any deletion.
type watch struct {
	c      *client
	prefix string

	upstreams.Runner // reads and watches the prefix

	problem *upstreams.Condition // the watch's own failure, not the connection's
	fan     *upstreams.Fanout[[]kv]

	keys map[string][]byte // the prefix's keys; owned by run
}

func newWatch(c *client, prefix string) *watch {
	w := &watch{c: c, prefix: prefix}
	w.problem = upstreams.NewCondition(c.log, "reading etcd keys failed; retrying with backoff", "reading etcd keys works again",
		zap.String("prefix", prefix), zap.String("server", c.st.where))
	w.fan = upstreams.NewFanout[[]kv](
		upstreams.Pending(fmt.Errorf("%s: waiting for the first read of keys under %q", c.st.where, prefix)),
		c.problem, w.problem)
	w.Init()
	c.watches.Add(w)
	return w
}

// start starts reading and watching the prefix.
func (w *watch) start() { w.Start(w.run) }

func (w *watch) run() {
	if !w.c.wait(w.Ctx) {
		return
	}
	backoff, reads := retryMin, 0
	for w.Ctx.Err() == nil {
		rev, err := w.read()
		if err == nil {
			if reads++; reads > 1 {
				w.c.link.WatchRestarted()
			} else if !w.Settle() {
				// ended right after its first read: never watched (etcd's
				// client leaves a watch on the server when it is cancelled
				// before etcd has confirmed it)
				return
			}
			backoff = retryMin
			err = w.follow(rev)
		}
		switch {
		case w.Ctx.Err() != nil:
			return
		case errors.Is(err, rpctypes.ErrCompacted):
			continue // read again at once, from the current revision
		case err != nil:
			if problem, conn := w.c.explainRead(w.prefix, err); conn {
				w.c.setProblem(problem)
			} else {
				w.fan.Set(w.problem, problem)
			}
		}
		if !w.Until(time.After(backoff)) {
			return
		}
		backoff = min(2*backoff, retryMax)
	}
}

// read reads every key under the prefix, publishes them, and returns the
// revision they are at.
func (w *watch) read() (int64, error) {
	ctx, cancel := context.WithTimeout(w.Ctx, w.c.st.timeout)
	defer cancel()
	resp, err := w.c.cli.Get(ctx, w.prefix, clientv3.WithPrefix())
	if err != nil {
		return 0, err
	}
	received := time.Now()
	w.keys = make(map[string][]byte, len(resp.Kvs))
	for _, e := range resp.Kvs {
		w.keys[string(e.Key)] = e.Value
	}
	w.c.setProblem(nil) // etcd answered
	w.fan.Set(w.problem, nil)
	w.publish(received)
	return resp.Header.Revision, nil
}

// follow watches the prefix from the revision after rev, publishing every
// change, until the watch ends; it returns why.
func (w *watch) follow(rev int64) error {
	ctx, cancel := context.WithCancel(clientv3.WithRequireLeader(w.Ctx))
	defer cancel()
	for resp := range w.c.cli.Watch(ctx, w.prefix, clientv3.WithPrefix(), clientv3.WithRev(rev+1)) {
		if err := resp.Err(); err != nil {
			return err
		}
		received := time.Now()
		for _, ev := range resp.Events {
			switch ev.Type {
			case mvccpb.PUT:
				w.keys[string(ev.Kv.Key)] = ev.Kv.Value
			case mvccpb.DELETE:
				delete(w.keys, string(ev.Kv.Key))
			}
		}
		if len(resp.Events) > 0 {
			w.publish(received)
		}
	}
	if err := w.Ctx.Err(); err != nil {
		return err
	}
	return errors.New("the watch ended")
}

// publish hands the keys, sorted, to every source's view.
func (w *watch) publish(received time.Time) {
	list := make([]kv, 0, len(w.keys))
	for k, v := range w.keys {
		list = append(list, kv{key: k, value: v})
	}
	slices.SortFunc(list, func(a, b kv) int { return strings.Compare(a.key, b.key) })
	w.fan.List(list)
	w.c.link.Observe(time.Since(received))
}

// Destruct ends the watch once its last source is gone; its requests are
// cancelled, so it returns at once.
func (w *watch) Destruct() error {
	w.c.watches.Remove(w)
	w.Stop()
	return nil
}

// acquireWatch returns the pooled watch of prefix through c, creating it if
// needed, and holds it for src.
func acquireWatch(src *upstreams.Source, c *client, prefix string) (*watch, error) {
	return upstreams.Acquire(src, c.key+"/watch/"+prefix, func() (*watch, error) { return newWatch(c, prefix), nil })
}
