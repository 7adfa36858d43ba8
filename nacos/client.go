package nacos

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/nacos-group/nacos-sdk-go/v2/clients"
	"github.com/nacos-group/nacos-sdk-go/v2/model"
	"github.com/nacos-group/nacos-sdk-go/v2/vo"
	"go.uber.org/zap"
)

// pool shares naming clients and subscriptions between all upstream sources
// of all loaded configs: a reload provisions the new config (which finds the
// running clients and subscriptions here) before it cleans up the old one.
var pool = caddy.NewUsagePool()

// namingClient is the part of the SDK's naming client that Caddy uses.
type namingClient interface {
	Subscribe(param *vo.SubscribeParam) error
	Unsubscribe(param *vo.SubscribeParam) error
	GetAllServicesInfo(param vo.GetAllServiceInfoParam) (model.ServiceList, error)
	ServerHealthy() bool
	CloseClient()
}

// newNamingClient creates an SDK naming client; tests replace it.
var newNamingClient = func(p vo.NacosClientParam) (namingClient, error) {
	c, err := clients.NewNamingClient(p)
	if err != nil {
		return nil, err
	}
	return c, nil
}

// Timings of the client's background work; tests shorten them.
var (
	healthInterval = 2 * time.Second  // how often the connection state is checked
	closeTimeout   = 5 * time.Second  // bound on CloseClient (nacos-sdk-go #912)
	reconnectGrace = 10 * time.Second // protect_threshold stays active this long after reconnecting
)

// client is one pooled SDK naming client for one (servers, namespace,
// credentials) fingerprint, shared by all subscriptions through it. It is
// created without any I/O; start creates the SDK client in the background.
type client struct {
	name      string // the server's name in the nacos app, for messages
	where     string // addresses and namespace, for messages
	namespace string
	param     vo.NacosClientParam
	auth      string // "username", "access_key" or "", for messages

	ctx    context.Context
	cancel context.CancelFunc
	start  func()
	done   sync.WaitGroup
	// leaving counts destructed subscriptions whose goroutine (final
	// Unsubscribe included) may still run.
	leaving sync.WaitGroup

	ready chan struct{} // closed once nc or createErr is set
	nc    namingClient
	// createErr is a permanent failure to create the SDK client.
	createErr error

	healthy     atomic.Bool
	connected   atomic.Int64 // unix nanos when the connection was last seen to come up
	reconnected atomic.Int64 // unix nanos of the latest reconnect
	problem     atomic.Pointer[problem]

	mu      sync.Mutex
	watches map[*watch]struct{}
}

// problem is a latest failure, shown to sources until it is cleared.
type problem struct{ err error }

func newClient(name string, param vo.NacosClientParam) *client {
	ctx, cancel := context.WithCancel(context.Background())
	addrs := make([]string, len(param.ServerConfigs))
	for i, s := range param.ServerConfigs {
		addrs[i] = fmt.Sprintf("%s:%d (gRPC %d)", s.IpAddr, s.Port, s.GrpcPort)
	}
	ns := param.ClientConfig.NamespaceId
	where := fmt.Sprintf("nacos server %q at %s", name, strings.Join(addrs, ", "))
	if ns != "" {
		where += fmt.Sprintf(", namespace %q", ns)
	}
	c := &client{
		name:      name,
		where:     where,
		namespace: ns,
		param:     param,
		ctx:       ctx,
		cancel:    cancel,
		ready:     make(chan struct{}),
		watches:   make(map[*watch]struct{}),
	}
	switch {
	case param.ClientConfig.Username != "":
		c.auth = "username"
	case param.ClientConfig.AccessKey != "":
		c.auth = "access_key"
	}
	c.problem.Store(&problem{fmt.Errorf("%s: connecting", where)})
	c.start = sync.OnceFunc(func() { c.done.Go(c.run) })
	return c
}

// run creates the SDK client, then watches its connection.
func (c *client) run() {
	redirectSDKLogs()
	var nc namingClient
	err := guard("creating the client", func() (err error) {
		nc, err = newNamingClient(c.param)
		return err
	})
	if err != nil {
		// Configuration errors are permanent; retrying would leak a client
		// per attempt (nacos-sdk-go #843).
		c.createErr = fmt.Errorf("%s: creating the client: %w", c.where, err)
		c.setProblem(c.createErr)
		close(c.ready)
		return
	}
	c.nc = nc
	// The first state is known before the subscriptions start, so that
	// their first Subscribe counts as made over this connection and the
	// kick of a healthy first check does not repeat it.
	c.checkHealth(true)
	close(c.ready)
	if c.ctx.Err() != nil {
		return
	}

	t := time.NewTicker(healthInterval)
	defer t.Stop()
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-t.C:
		}
		c.checkHealth(false)
	}
}

// checkHealth follows the connection state: it reports a lost connection
// once, and on reconnecting has every subscription re-read.
func (c *client) checkHealth(first bool) {
	now := c.nc.ServerHealthy()
	was := c.healthy.Swap(now)
	switch {
	case now && !was:
		at := time.Now().UnixNano()
		c.connected.Store(at)
		if !first {
			c.reconnected.Store(at)
		}
		c.clearProblem()
		c.kickAll()
	case !now && (was || first):
		what := "the connection was lost"
		if first {
			what = "no connection could be made"
		}
		c.setProblem(fmt.Errorf("cannot reach %s over gRPC: %s; check addresses and grpc_port, and that the server is up "+
			"(serving the last known instances meanwhile)", c.where, what))
	}
}

// protecting reports whether protect_threshold applies now: while the
// connection is down and for reconnectGrace after it came back.
func (c *client) protecting() bool {
	if !c.healthy.Load() {
		return true
	}
	at := c.reconnected.Load()
	return at != 0 && time.Since(time.Unix(0, at)) < reconnectGrace
}

// setProblem records a connection problem, logs it once and shows it to the
// subscriptions.
func (c *client) setProblem(err error) {
	old := c.problem.Swap(&problem{err: err})
	if old != nil && old.err.Error() == err.Error() {
		return
	}
	caddy.Log().Named("nacos").Error("nacos connection problem", zap.Error(err))
	c.publishAll()
}

func (c *client) clearProblem() {
	if old := c.problem.Swap(nil); old != nil {
		caddy.Log().Named("nacos").Info("connected to nacos server", zap.String("server", c.where), zap.NamedError("previous_error", old.err))
		c.publishAll()
	}
}

// timeout is how long one request to the server may take.
func (c *client) timeout() time.Duration {
	if cc := c.param.ClientConfig; cc != nil && cc.TimeoutMs > 0 {
		return time.Duration(cc.TimeoutMs) * time.Millisecond
	}
	return defaultTimeout
}

// connProblem is the current connection problem, or nil.
func (c *client) connProblem() error {
	if p := c.problem.Load(); p != nil {
		return p.err
	}
	return nil
}

func (c *client) addWatch(w *watch) {
	c.mu.Lock()
	c.watches[w] = struct{}{}
	c.mu.Unlock()
}

func (c *client) removeWatch(w *watch) {
	c.mu.Lock()
	delete(c.watches, w)
	c.mu.Unlock()
}

func (c *client) watchCount() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.watches)
}

func (c *client) each(f func(*watch)) {
	c.mu.Lock()
	ws := make([]*watch, 0, len(c.watches))
	for w := range c.watches {
		ws = append(ws, w)
	}
	c.mu.Unlock()
	for _, w := range ws {
		f(w)
	}
}

func (c *client) kickAll()    { c.each((*watch).kick) }
func (c *client) publishAll() { c.each((*watch).publish) }

// Destruct stops the client once the last subscription through it is gone:
// it waits for the subscriptions still leaving, then closes the SDK client.
// Unsubscribes to an unreachable server and CloseClient (nacos-sdk-go #912)
// can hang, so all of it together is given closeTimeout; what is left then
// finishes in the background, still closing the SDK client in the end.
func (c *client) Destruct() error {
	c.cancel()
	closed := make(chan struct{})
	go func() {
		defer close(closed)
		c.done.Wait()
		c.leaving.Wait()
		if c.nc != nil {
			_ = guard("closing the client", func() error { c.nc.CloseClient(); return nil })
		}
	}()
	t := time.NewTimer(closeTimeout)
	defer t.Stop()
	select {
	case <-closed:
		return nil
	case <-t.C:
		return errors.New(c.where + ": closing the client timed out; abandoning it")
	}
}

// guard runs an SDK call on one of our goroutines and turns a panic into an
// error. The SDK type-asserts server answers unchecked (the login response's
// tokenTtl, the type of every gRPC response), so a misbehaving server, or an
// address that serves some other JSON, must not crash Caddy.
func guard(what string, f func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%s: the Nacos client failed on the server's answer (is this a Nacos server?): %v", what, r)
		}
	}()
	return f()
}

// acquireClient returns the pooled client for param, creating it if needed:
// one per (servers, namespace, credentials), whatever else the servers'
// settings say (reconcile_interval belongs to each source). The caller must
// release it with pool.Delete(key).
func acquireClient(name string, param vo.NacosClientParam) (c *client, key string, err error) {
	key = "nacos/client/" + fingerprint(param)
	v, _, err := pool.LoadOrNew(key, func() (caddy.Destructor, error) {
		return newClient(name, param), nil
	})
	if err != nil {
		return nil, "", err
	}
	return v.(*client), key, nil
}
