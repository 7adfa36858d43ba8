package zookeeper

import (
	"crypto/tls"
	"errors"
	"fmt"
	"maps"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/go-zookeeper/zk"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/caddy-discovery/caddy-discovery/upstreams"
)

// client is one pooled ZooKeeper session for one connection (servers,
// session timeout, user), shared by every watch through it. It is created
// without any I/O: the session is opened in the background once the app
// starts. The ZooKeeper client reconnects by itself, keeping the session
// and its watches while the session lives; when the session expires every
// watch ends, and the watches list their paths again on the new session.
type client struct {
	log *zap.Logger // shared by the client's watches
	key string      // in the pool
	st  settings

	upstreams.Runner // opens the session and follows its state

	ready chan struct{} // closed once conn is set
	conn  *zk.Conn

	mu      sync.Mutex
	watches map[string]*watch    // the watches through the client, by path
	problem *upstreams.Condition // the connection's
	link    *upstreams.Link
}

func newClient(st settings) *client {
	c := &client{st: st, ready: make(chan struct{}), link: upstreams.NewLink("zookeeper", st.conn, publishSeconds)}
	c.log = caddy.Log().Named("zookeeper")
	c.problem = upstreams.NewCondition(c.log, "zookeeper connection problem", "connected to zookeeper", zap.String("server", st.where))
	c.problem.Set(upstreams.Pending(fmt.Errorf("%s: connecting", st.where)))
	c.Init()
	return c
}

// start opens the session in the background.
func (c *client) start() { c.Start(c.run) }

// zkLog sends the ZooKeeper client's log lines to Caddy's log, at debug
// level: its connection errors reach the sources as problems, logged once.
type zkLog struct{}

func (zkLog) Printf(format string, args ...any) {
	if ce := caddy.Log().Named("zookeeper.client").Check(zapcore.DebugLevel, ""); ce != nil {
		ce.Message = fmt.Sprintf(format, args...) // formatted only when debug logging is on
		ce.Write()
	}
}

func (c *client) run() {
	conn, events, err := zk.Connect(c.st.servers, c.st.timeout, zk.WithLogger(zkLog{}), zk.WithLogInfo(false), zk.WithDialer(c.dial),
		zk.WithEventCallback(c.fired))
	if err != nil {
		c.setProblem(upstreams.Problem(upstreams.KindMisconfigured, fmt.Errorf("%s: %w; check servers", c.st.where, err)))
		return
	}
	c.conn = conn
	close(c.ready)
	var auth sync.WaitGroup
	defer auth.Wait()
	defer conn.Close()
	if c.st.username != "" {
		auth.Go(func() {
			// Sent once connected, and again by the client on every new
			// connection; a refusal ends the connection (StateAuthFailed).
			_ = conn.AddAuth("digest", []byte(c.st.username+":"+c.st.password))
		})
	}
	var session int64 // of the latest StateHasSession
	for {
		select {
		case <-c.Ctx.Done():
			return
		case ev, ok := <-events:
			if !ok {
				return
			}
			session = c.follow(ev, session)
		}
	}
}

// follow takes in a session event and returns the session's ID: on a new
// session after an expired one, the watches list their paths again.
func (c *client) follow(ev zk.Event, session int64) int64 {
	switch ev.State {
	case zk.StateHasSession:
		id := c.conn.SessionID()
		if session != 0 && id != session {
			c.link.WatchRestarted()
			c.each((*watch).kick) // the old session's watches are gone
		}
		c.setProblem(nil)
		return id
	case zk.StateDisconnected:
		c.setProblem(upstreams.Problem(upstreams.KindUnreachable, fmt.Errorf("cannot reach %s: the connection is lost or was never made (reconnecting; serving the last known instances meanwhile); check servers, and that ZooKeeper runs and listens there", c.st.where)))
	case zk.StateExpired:
		c.setProblem(upstreams.Problem(upstreams.KindUnreachable, fmt.Errorf("%s: the session expired (ZooKeeper had not heard from Caddy for session_timeout); opening a new one and listing again (serving the last known instances meanwhile)", c.st.where)))
	case zk.StateAuthFailed:
		c.setProblem(upstreams.Problem(upstreams.KindUnauthorized, fmt.Errorf("%s: digest authentication failed; check username and password (serving the last known instances meanwhile)", c.st.where)))
	}
	return session
}

// dial connects to a server for the ZooKeeper client, with TLS if the
// connection has it. The client only logs why a connection failed and tries
// the next server, so a TLS failure, of the handshake or an alert the
// server sends after it (as when it refuses the client certificate under
// TLS 1.3), becomes the connection's problem here.
func (c *client) dial(network, address string, timeout time.Duration) (net.Conn, error) {
	if c.st.tls == nil {
		return net.DialTimeout(network, address, timeout)
	}
	cfg := c.st.tls.Clone()
	if cfg.ServerName == "" {
		cfg.ServerName, _, _ = net.SplitHostPort(address)
	}
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: timeout}, network, address, cfg)
	if err != nil {
		c.tlsFailed(err)
		return nil, err
	}
	return &tlsConn{Conn: conn, c: c}, nil
}

// tlsFailed makes err the connection's problem when it is a TLS failure.
func (c *client) tlsFailed(err error) {
	fix, ok := upstreams.TLSFailure(err, "ZooKeeper", "ssl.clientAuth")
	var record tls.RecordHeaderError
	if !ok && errors.As(err, &record) {
		fix, ok = "it does not speak TLS there: list the servers' secureClientPort, or remove tls, ca_file, cert_file, key_file and tls_server_name", true
	}
	if ok {
		c.setProblem(upstreams.Problem(upstreams.KindUnreachable, fmt.Errorf("cannot reach %s: %s (serving the last known instances meanwhile)", c.st.where, fix)))
	}
}

// tlsConn is a TLS connection whose read errors dial looks at.
type tlsConn struct {
	net.Conn
	c *client
}

func (t *tlsConn) Read(b []byte) (int, error) {
	n, err := t.Conn.Read(b)
	if err != nil {
		t.c.tlsFailed(err)
	}
	return n, err
}

// wait waits until the session is being opened, and reports false if the
// runner stopped first or the connection could not be made at all.
func (c *client) wait(done <-chan struct{}) bool {
	select {
	case <-c.ready:
		return true
	case <-done:
		return false
	}
}

// setProblem records the connection's problem, or its end (nil); its
// condition logs it once, and the watches show it as their trouble.
func (c *client) setProblem(err error) {
	c.link.SetConnected(err == nil)
	if c.problem.Set(err) {
		c.each(func(w *watch) { w.fan.Troubled() })
	}
}

// connectionError reports whether err is the connection's matter, which
// the session's state explains.
func connectionError(err error) bool {
	return errors.Is(err, zk.ErrConnectionClosed) || errors.Is(err, zk.ErrNoServer) || errors.Is(err, zk.ErrSessionExpired) ||
		errors.Is(err, zk.ErrClosing) || errors.Is(err, zk.ErrAuthFailed)
}

// Destruct closes the session once the last watch through it is gone; it
// returns at once.
func (c *client) Destruct() error {
	c.Stop()
	c.link.Close()
	return nil
}

// acquireClient returns the pooled session of the connection st, named
// name in the zookeeper app ("" for a source's own fields), creating it if
// needed, and holds it for src.
func acquireClient(src *upstreams.Source, name string, st settings) (*client, error) {
	key := "zookeeper/client/" + st.fingerprint(name)
	return upstreams.Acquire(src, key, func() (*client, error) {
		c := newClient(st)
		c.key = key
		return c, nil
	})
}

// watch adds w to the watches through the client.
func (c *client) watch(w *watch) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.watches == nil {
		c.watches = make(map[string]*watch)
	}
	c.watches[w.path] = w
}

// unwatch removes w.
func (c *client) unwatch(w *watch) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.watches[w.path] == w {
		delete(c.watches, w.path)
	}
}

// each calls f on every watch through the client, outside the lock.
func (c *client) each(f func(*watch)) {
	c.mu.Lock()
	ws := slices.Collect(maps.Values(c.watches))
	c.mu.Unlock()
	for _, w := range ws {
		f(w)
	}
}

// fired hands a fired ZooKeeper watch to the watch that set it: a path's
// children (or existence) watch to the watch of that path, a node's data
// watch to the watch of its parent; a deletion may concern both. It is the
// session's event callback, called on the client's receiving goroutine for
// every event, so it never waits: one goroutine serves every ZooKeeper
// watch of the session, rather than one per watch.
func (c *client) fired(ev zk.Event) {
	if ev.Type == zk.EventSession || ev.Path == "" {
		return
	}
	dir, child := "", ""
	if i := strings.LastIndexByte(ev.Path, '/'); i >= 0 {
		dir, child = ev.Path[:i], ev.Path[i+1:]
	}
	c.mu.Lock()
	own, parent := c.watches[ev.Path], c.watches[dir]
	c.mu.Unlock()
	if own != nil {
		own.fired.add(event{Event: ev})
	}
	if parent != nil && child != "" {
		parent.fired.add(event{child: child, Event: ev})
	}
}
