package upstreams

import (
	"errors"
	"fmt"
	"net/http"
	"slices"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"
	"go.uber.org/zap"
)

// The module side that every registry's upstream source shares: a source
// module embeds Source, which gives it GetUpstreams and Cleanup, and its
// Provision is
//
//	app, err := upstreams.Open[*App](ctx, "consul")
//	… resolve the connection: app's Connections.Resolve
//	… acquire the shared client and watch: Acquire(&u.Source, key, create)
//	pub := u.Publish(ctx.Logger(), "consul", service)
//	… have the watch push lists and trouble into pub
//
// Everything a source acquires is released when it is cleaned up, newest
// first; nothing there waits on a registry.

// pool shares clients and watches between the sources of all loaded
// configs: a reload provisions the new config, which finds the running
// clients and watches here, before it cleans up the old one. Keys start
// with the source's name ("consul/client/…").
var pool = caddy.NewUsagePool()

// Open is the start of a source's Provision: it registers the metrics in
// the config's registry (which the admin API's /metrics and any metrics
// handler serve) and loads the source's app, such as "consul".
func Open[A caddy.App](ctx caddy.Context, app string) (A, error) {
	var zero A
	if err := RegisterMetrics(ctx.GetMetricsRegistry()); err != nil {
		return zero, err
	}
	v, err := ctx.App(app)
	if err != nil {
		return zero, err
	}
	a, ok := v.(A)
	if !ok {
		return zero, fmt.Errorf("the %s app is a %T, not a %T", app, v, zero)
	}
	return a, nil
}

// Source is the module side of an upstream source: the publisher that
// GetUpstreams reads, its entry in the admin dump and metrics, and what the
// source acquired from the shared pool. Embed it in the module; its zero
// value is ready to use.
type Source struct {
	pub        *Publisher
	unregister func()
	keys       []string // pool keys, in the order acquired
	leave      []func()
	perRequest *perRequest // services chosen per request; nil: one service, pub's
}

// Acquire returns the pooled value of key (a client, a watch), creating it
// if needed, and holds it until s is cleaned up: s's last user releases it
// (its Destruct), newest first, so a watch goes before the client it runs
// on. Keys name the registry first ("consul/client/<fingerprint>").
// create makes no request to the registry: Provision runs in `caddy
// validate` too, and a pooled value starts when the app starts.
func Acquire[T caddy.Destructor](s *Source, key string, create func() (T, error)) (T, error) {
	v, _, err := pool.LoadOrNew(key, func() (caddy.Destructor, error) { return create() })
	if err != nil {
		var zero T
		return zero, err
	}
	s.keys = append(s.keys, key)
	return v.(T), nil
}

// Publish makes the source's publisher, of service as the admin dump, the
// metrics and log lines name it (its reference as written, and any
// selection), for the source named kind ("consul"), and lists it in the
// dump and metrics until cleanup.
func (s *Source) Publish(log *zap.Logger, kind, service string) *Publisher {
	s.pub = NewPublisher(log, service)
	s.unregister = Register(kind, service, s.pub.Cell())
	return s.pub
}

// OnCleanup adds f to what cleanup does first, before it releases what the
// source acquired: e.g. leaving a shared watch's list of publishers.
func (s *Source) OnCleanup(f func()) { s.leave = append(s.leave, f) }

// GetUpstreams returns the service's current upstreams from memory: fresh
// values, sorted by address, or the error that says why there are none.
func (s *Source) GetUpstreams(r *http.Request) ([]*reverseproxy.Upstream, error) {
	if s.perRequest != nil {
		return s.perRequest.getUpstreams(r)
	}
	if s.pub == nil {
		return nil, errors.New("upstream source is not provisioned")
	}
	return s.pub.Load().Upstreams()
}

// Cleanup leaves the dump, runs what OnCleanup added, and releases what the
// source acquired, newest first; the last user of a client or watch stops
// it. It is safe after a failed Provision, and to call twice.
func (s *Source) Cleanup() error {
	if s.perRequest != nil {
		s.perRequest.cleanup()
		s.perRequest = nil
	}
	if s.unregister != nil {
		s.unregister()
		s.unregister = nil
	}
	for _, f := range s.leave {
		f()
	}
	s.leave = nil
	var errs []error
	for _, k := range slices.Backward(s.keys) {
		if _, err := pool.Delete(k); err != nil {
			errs = append(errs, err)
		}
	}
	s.keys = nil
	return errors.Join(errs...)
}

// Snapshot is the source's current snapshot, as GetUpstreams serves it; nil
// before Provision.
func (s *Source) Snapshot() *Snapshot {
	if s.pub == nil {
		return nil
	}
	return s.pub.Load()
}

// Interface guards
var (
	_ caddy.CleanerUpper          = (*Source)(nil)
	_ reverseproxy.UpstreamSource = (*Source)(nil)
)
