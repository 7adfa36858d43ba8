package etcd

import (
	"context"
	"fmt"
	"time"

	"github.com/caddyserver/caddy/v2"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/caddy-discovery/caddy-discovery/upstreams"
)

// Timings of the client; tests shorten them.
var (
	// A client that could not be created (the cluster is unreachable while
	// logging in, the password is wrong) is created again after retryMin,
	// doubling up to retryMax; so is a failed read or watch.
	retryMin = time.Second
	retryMax = 30 * time.Second
	// A watch waits silently for changes, so on its own a hung member (a
	// stopped process, a dropped route) would go unnoticed. Every
	// probeInterval the client asks the cluster for its members, an answer
	// etcd gives at once; none within probeTimeout is the
	// connection's problem, reported within 8 s. While there is one, the
	// probe asks every probeRetry, so that its end is noticed soon.
	probeInterval = 5 * time.Second
	probeTimeout  = 3 * time.Second
	probeRetry    = time.Second
)

// client is one pooled etcd client for one connection (endpoints, TLS
// settings, user), shared by every watch through it. It is created without
// any I/O: the etcd client, which logs in when the cluster has
// authentication on, is made in the background once the app starts.
type client struct {
	log *zap.Logger // shared by the client's watches
	key string      // in the pool
	st  settings

	upstreams.Runner // creates the etcd client, then probes the cluster

	ready chan struct{} // closed once cli is set
	cli   *clientv3.Client

	watches upstreams.Members[*watch] // the watches through the client
	problem *upstreams.Condition      // the connection's
	link    *upstreams.Link
}

func newClient(st settings) *client {
	c := &client{
		st:    st,
		ready: make(chan struct{}),
		link:  upstreams.NewLink("etcd", st.conn, publishSeconds),
	}
	c.log = caddy.Log().Named("etcd")
	c.problem = upstreams.NewCondition(c.log, "etcd connection problem", "connected to etcd", zap.String("server", st.where))
	c.problem.Set(upstreams.Pending(fmt.Errorf("%s: connecting", st.where)))
	c.Init()
	return c
}

// start creates the etcd client in the background, then probes the
// cluster.
func (c *client) start() { c.Start(c.run) }

func (c *client) run() {
	cfg := clientv3.Config{
		Endpoints:   c.st.endpoints,
		Username:    c.st.username,
		Password:    c.st.password,
		TLS:         c.st.tls,
		DialTimeout: c.st.timeout,
		// gRPC keepalives notice a member that stopped answering under an
		// open stream (the watches), and move to another member.
		DialKeepAliveTime:    probeInterval,
		DialKeepAliveTimeout: probeTimeout,
		Context:              c.Ctx,
		// The client logs every retry; its errors reach the sources as
		// problems, logged once.
		Logger: caddy.Log().Named("etcd.client").WithOptions(zap.IncreaseLevel(zap.ErrorLevel)),
	}
	backoff := retryMin
	for {
		cli, err := clientv3.New(cfg)
		if err == nil {
			c.cli = cli
			break
		}
		c.setProblem(c.explain(err))
		if !c.Until(time.After(backoff)) {
			return
		}
		backoff = min(2*backoff, retryMax)
	}
	close(c.ready)
	defer c.cli.Close()
	c.probe()
}

// probe asks the cluster for its members every probeInterval (see there),
// and reports whether it answers as the connection's state.
func (c *client) probe() {
	t := time.NewTimer(0)
	defer t.Stop()
	for c.Until(t.C) {
		err := c.status()
		switch {
		case c.Ctx.Err() != nil:
			return
		case err != nil:
			if tlsErr := c.diagnoseTLS(c.Ctx); tlsErr != nil {
				err = tlsErr
			}
			c.setProblem(c.explain(err))
			t.Reset(probeRetry)
		default:
			c.setProblem(nil)
			t.Reset(probeInterval)
		}
	}
}

// status asks the cluster for its members over the client's connection
// (the one the watches use; Status would dial a connection of its own each
// time), an answer that needs no permission and comes at once.
func (c *client) status() error {
	ctx, cancel := context.WithTimeout(c.Ctx, probeTimeout)
	defer cancel()
	_, err := c.cli.MemberList(ctx)
	return err
}

// wait waits until the etcd client exists, and reports false if ctx ended
// first.
func (c *client) wait(ctx context.Context) bool {
	select {
	case <-c.ready:
		return true
	case <-ctx.Done():
		return false
	}
}

// setProblem records the connection's problem, or its end (nil); its
// condition logs it once, and the watches show it as their trouble.
func (c *client) setProblem(err error) {
	c.link.SetConnected(err == nil)
	if c.problem.Set(err) {
		c.watches.Each(nil, func(w *watch) { w.fan.Troubled() })
	}
}

// Destruct stops the client once the last watch through it is gone; the
// client's requests are cancelled, so it returns at once.
func (c *client) Destruct() error {
	c.Stop()
	c.link.Close()
	return nil
}

// acquireClient returns the pooled client of the connection st, named name
// in the etcd app ("" for a source's own fields), creating it if needed,
// and holds it for src.
func acquireClient(src *upstreams.Source, name string, st settings) (*client, error) {
	key := "etcd/client/" + st.fingerprint(name)
	return upstreams.Acquire(src, key, func() (*client, error) {
		c := newClient(st)
		c.key = key
		return c, nil
	})
}
