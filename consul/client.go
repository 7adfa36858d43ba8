package consul

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/hashicorp/consul/api"
	"go.uber.org/zap"

	"github.com/caddy-discovery/caddy-discovery/tokenfile"
	"github.com/caddy-discovery/caddy-discovery/upstreams"
)

// Timings of the client's background checks; tests shorten them.
var (
	// tokenCheckInterval is how often a token_file is checked for a new
	// token while the long-polls wait.
	tokenCheckInterval = 5 * time.Second
	// A long-poll waits up to a minute for its answer, so on its own a hung
	// Consul (a stopped process, a dropped route) would be noticed only
	// when the long-polls time out, over a minute later. Every
	// probeInterval the client asks the active address for the leader, an
	// answer Consul gives at once; none within probeTimeout is the
	// connection's problem, and with several addresses the long-polls move
	// to the next one. While the connection has a problem, the probe asks
	// every probeRetry, so that its end is noticed even while the
	// long-polls wait for a change.
	probeInterval = 10 * time.Second
	probeTimeout  = 5 * time.Second
	probeRetry    = time.Second
)

// client is one pooled connection to one Consul agent or server cluster
// (addresses, TLS settings and token), shared by every long-poll through
// it. It holds one consul/api client per address; all requests go to the
// active address, and a connection error moves on to the next one. The
// connection's state is what the latest request found: it is a Condition,
// logged once when it fails and once when it works again, and every
// long-poll through the client shows it as its trouble.
type client struct {
	log   *zap.Logger // shared by the client's long-polls
	key   string      // in the pool
	name  string      // the server's name in the consul app, "" for a source's own fields
	where string      // for messages
	conn  string      // the connection label of the metrics
	apis  []*api.Client
	addrs []address
	// active is the index of the address requests go to.
	active atomic.Int32
	base   *http.Transport
	file   *tokenfile.File // nil without token_file
	token  bool            // a token or token_file is set

	problem *upstreams.Condition
	link    *upstreams.Link

	upstreams.Runner // probes the connection and checks the token file

	polls upstreams.Members[*longPoll] // the long-polls through the client
}

// newClient makes the client of e, without any I/O: start runs its token
// check, if it has a token file.
func newClient(name string, e endpoint) (*client, error) {
	c := &client{
		name:  name,
		where: e.where(name),
		conn:  e.connectionName(name),
		addrs: e.addrs,
		token: e.token != "" || e.tokenFile != "",
	}
	base := http.DefaultTransport.(*http.Transport).Clone()
	base.TLSClientConfig = e.tls
	// Long-polls hold a connection each; keep them, and a few spare.
	base.MaxIdleConnsPerHost = 16
	// Over HTTP/1.1 each followed service holds a connection that waits on
	// its blocking query: small buffers (a request is a few hundred bytes,
	// a larger answer is read in more steps) save 6.5 KB per service over
	// the default 4 KB each way.
	base.WriteBufferSize, base.ReadBufferSize = 512, 1024
	c.base = base
	tr := &transport{next: base, token: e.token}
	if e.tokenFile != "" {
		c.file = newTokenFile(e.tokenFile)
		tr.file = c.file
	}
	hc := &http.Client{Transport: tr}
	for _, a := range e.addrs {
		scheme := "http"
		if a.https {
			scheme = "https"
		}
		ac, err := api.NewClient(&api.Config{Address: a.host, Scheme: scheme, PathPrefix: a.pathPrefix, HttpClient: hc})
		if err != nil {
			return nil, fmt.Errorf("%s: creating the client: %w", c.where, err)
		}
		c.apis = append(c.apis, ac)
	}
	c.link = upstreams.NewLink("consul", c.conn, publishSeconds)
	c.log = caddy.Log().Named("consul")
	c.problem = upstreams.NewCondition(c.log, "consul connection problem", "connected to consul", zap.String("server", c.where))
	c.Init()
	return c, nil
}

// start starts probing the connection and, with a token file, checking it.
func (c *client) start() {
	if c.file != nil {
		c.Start(c.probe, c.checkToken)
	} else {
		c.Start(c.probe)
	}
}

// api returns the active address's index and client.
func (c *client) api() (int, *api.Client) {
	i := int(c.active.Load())
	return i, c.apis[i]
}

// failed reports a request to address i that failed for want of a
// connection (err says why): the next address becomes the active one, and
// the connection's problem is err.
func (c *client) failed(i int, err error) {
	c.active.CompareAndSwap(int32(i), int32((i+1)%len(c.apis)))
	c.link.SetConnected(false)
	c.setProblem(err)
}

// unreached reports a request to address i (with the given timeout) that
// failed, and whether it failed to reach Consul: then it is the
// connection's problem, and the next address becomes the active one.
func (c *client) unreached(i int, err error, timeout time.Duration) bool {
	connErr := c.connectionError(err, timeout)
	var tf *tokenFileError
	switch {
	case connErr == nil:
		c.reached()
		return false
	case errors.As(err, &tf):
		c.setProblem(connErr) // no address is to blame
	default:
		c.failed(i, connErr)
	}
	return true
}

// probe asks the active address for the leader every probeInterval, so
// that a Consul that stopped answering is noticed while the long-polls
// still wait on it (see probeInterval). When it moves on to another
// address, the long-polls start again there.
func (c *client) probe() {
	t := time.NewTimer(probeInterval)
	defer t.Stop()
	for c.Until(t.C) {
		i, ac := c.api()
		ctx, cancel := context.WithTimeout(c.Ctx, probeTimeout)
		_, err := ac.Status().LeaderWithQueryOptions((&api.QueryOptions{}).WithContext(ctx))
		cancel()
		switch {
		case c.Ctx.Err() != nil:
			return
		case err == nil:
			c.reached()
		case c.unreached(i, err, probeTimeout) && int(c.active.Load()) != i:
			c.polls.Each(nil, (*longPoll).restart)
		}
		if c.connProblem() != nil {
			t.Reset(probeRetry)
		} else {
			t.Reset(probeInterval)
		}
	}
}

// reached reports a request that Consul answered.
func (c *client) reached() {
	c.link.SetConnected(true)
	c.setProblem(nil)
}

// setProblem records the connection's problem, or its end (nil); its
// condition logs it once, and the long-polls show it as their trouble.
func (c *client) setProblem(err error) {
	if c.problem.Set(err) {
		c.polls.Each(nil, func(w *longPoll) { w.fan.Troubled() })
	}
}

// connProblem is the connection's current problem, or nil.
func (c *client) connProblem() error { return c.problem.Err() }

// checkToken restarts every long-poll with the new token when the token
// file changes, so that a rotated token takes effect at once rather than
// when the ongoing long-polls end.
func (c *client) checkToken() {
	last, _ := c.file.Get()
	t := time.NewTicker(tokenCheckInterval)
	defer t.Stop()
	for c.Until(t.C) {
		if tok, err := c.file.Get(); err == nil && tok != last {
			last = tok
			c.log.Info("consul token file changed; restarting the long-polls with the new token",
				zap.String("server", c.where), zap.String("token_file", c.file.Path))
			c.polls.Each(nil, (*longPoll).restart)
		}
	}
}

// Destruct stops the client once the last long-poll through it is gone.
func (c *client) Destruct() error {
	c.Stop()
	c.link.Close()
	c.base.CloseIdleConnections()
	return nil
}

// acquireClient returns the pooled client of the connection e, named name
// in the consul app ("" for a source's own fields), creating it if needed,
// and holds it for src.
func acquireClient(src *upstreams.Source, name string, e endpoint) (*client, error) {
	key := "consul/client/" + e.fingerprint(name)
	return upstreams.Acquire(src, key, func() (*client, error) {
		c, err := newClient(name, e)
		if c != nil {
			c.key = key
		}
		return c, err
	})
}
