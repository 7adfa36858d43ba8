package eureka

import (
	"errors"
	"fmt"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/caddy-discovery/caddy-discovery/upstreams"
)

// feed is one pooled poller of one connection (URLs, credentials, timings),
// shared by every source that reads an application through it. It is
// created without any I/O; start begins polling.
type feed struct {
	where  string
	poller *Poller
	// problem is the connection's: pending until the first poll, then the
	// latest poll's failure; logged once.
	problem *upstreams.Condition
	link    *upstreams.Link

	upstreams.Runner // runs the poller
}

func newFeed(where string, srv Server) (*feed, error) {
	cfg, err := srv.config()
	if err != nil {
		return nil, err
	}
	log := caddy.Log().Named("eureka")
	cfg.Logger = log
	client, err := NewClient(cfg)
	if err != nil {
		return nil, err
	}
	f := &feed{
		where: where,
		poller: NewPoller(client, PollerOptions{
			Interval: time.Duration(srv.RefreshInterval),
			Logger:   log,
			OnFetch:  func(full bool, err error) { countFetch(where, full, err) },
		}),
		problem: upstreams.NewCondition(log, "eureka connection problem", "connected to eureka",
			zap.String("server", where)),
		link: upstreams.NewLink("eureka", where, nil),
	}
	f.problem.Set(upstreams.Pending(fmt.Errorf("eureka %s: waiting for the first answer", where)))
	f.Init()
	return f, nil
}

// start starts polling.
func (f *feed) start() { f.Start(func() { f.poller.Run(f.Ctx) }) }

// observe takes in the outcome of a poll, as an update tells it, and
// returns the connection's trouble. Every subscriber's update carries the
// same outcome; the condition logs it once.
func (f *feed) observe(err error) error {
	if err != nil {
		err = explainPoll(f.where, err)
	}
	f.problem.Set(err)
	f.link.SetConnected(err == nil)
	return f.problem.Err()
}

// Destruct stops polling once the last source is gone.
func (f *feed) Destruct() error {
	f.Stop()
	f.link.Close()
	return nil
}

// explainPoll marks a failed poll with its kind. The client's errors say
// what failed and how to fix it, and never hold credentials.
func explainPoll(where string, err error) error {
	var status *StatusError
	if errors.As(err, &status) {
		kind := upstreams.KindOther
		switch status.Code {
		case 401:
			kind = upstreams.KindUnauthorized
		case 403:
			kind = upstreams.KindForbidden
		case 404:
			kind = upstreams.KindNotFound
		}
		return upstreams.Problem(kind, fmt.Errorf("eureka %s: %w", where, err))
	}
	return upstreams.Problem(upstreams.KindUnreachable, fmt.Errorf("eureka %s: cannot read the registry (serving the last known instances meanwhile): %w", where, err))
}

// acquireFeed returns the pooled feed of the connection srv, named name in
// the eureka app ("" for a source's own fields), creating it if needed, and
// holds it for src.
func acquireFeed(src *upstreams.Source, name string, srv Server) (*feed, error) {
	return upstreams.Acquire(src, feedKey(name, srv), func() (*feed, error) { return newFeed(srv.where(name), srv) })
}

// feedKey is the pool key of the feed of the connection srv, named name.
func feedKey(name string, srv Server) string { return "eureka/" + srv.fingerprint(name) }
