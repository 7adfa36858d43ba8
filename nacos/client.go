package nacos

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/nacos-group/nacos-sdk-go/v2/model"
	"github.com/nacos-group/nacos-sdk-go/v2/vo"
	"go.uber.org/zap"
	"golang.org/x/time/rate"

	"github.com/caddy-discovery/caddy-discovery/upstreams"
)

// namingClient is the part of the SDK's naming client that Caddy uses.
type namingClient interface {
	Subscribe(param *vo.SubscribeParam) error
	Unsubscribe(param *vo.SubscribeParam) error
	GetAllServicesInfo(param vo.GetAllServiceInfoParam) (model.ServiceList, error)
	ServerHealthy() bool
	CloseClient()
}

// tuning is what a client and its subscriptions run on besides their
// config: the SDK client's constructor and the timings of their background
// work. Production uses productionTuning; tests inject fakes and shorter
// timings through NacosUpstreams.tuning. Sources share a pooled client only
// with the same tuning.
type tuning struct {
	// newNaming creates an SDK naming client whose processing of pushes
	// and re-subscriptions holds sdk (see sdkserial.go), the mutex our own
	// Subscribe and Unsubscribe calls hold.
	newNaming func(p vo.NacosClientParam, sdk *sync.Mutex) (namingClient, error)

	healthInterval time.Duration // how often the connection state is checked
	// closeTimeout bounds how long closing a client may hold up a reload
	// or shutdown: the final Unsubscribes and CloseClient, which a hung
	// server holds up (nacos-sdk-go #912). What is left then goes on in
	// the background.
	closeTimeout   time.Duration
	reconnectGrace time.Duration // protect_threshold stays active this long after reconnecting
	// grpcGrace is how long the server may answer over HTTP while no
	// request gets through for want of a gRPC connection before that is
	// reported: the SDK waits up to 5 s between reconnect attempts
	// (common/remote/rpc/rpc_client.go:457-467 in v2.3.5).
	grpcGrace time.Duration

	// Retry timings of subscriptions. A subscription that failed on its own
	// backs off from retryMin to retryMax; one that failed for want of a
	// connection while the server is reachable retries from connRetry up to
	// healthInterval, so that it goes through soon after the connection
	// does.
	retryMin, retryMax, connRetry time.Duration

	// reconcileRate is how many routine re-reads (reconcile_interval) a
	// client starts a second at most, spread evenly: each one costs the SDK
	// an Unsubscribe, a Subscribe, a JSON log line and a disk write (about
	// 1.6 ms of CPU), so that a client following thousands of services
	// stretches its round rather than spend a core on it.
	reconcileRate rate.Limit
}

// productionTuning is the tuning of every source that sets none.
var productionTuning = defaultTuning()

// defaultTuning is the tuning of production: the SDK's client and these
// timings.
func defaultTuning() *tuning {
	return &tuning{
		newNaming:      newSDKClient,
		healthInterval: 2 * time.Second,
		closeTimeout:   200 * time.Millisecond,
		reconnectGrace: 10 * time.Second,
		grpcGrace:      15 * time.Second,
		retryMin:       time.Second,
		retryMax:       30 * time.Second,
		connRetry:      200 * time.Millisecond,
		reconcileRate:  defaultReconcileRate,
	}
}

// sdkNotConnected is how the SDK fails a request, without sending it, while
// its gRPC connection is not up (common/remote/rpc/rpc_client.go:590-592 in
// v2.3.5).
const sdkNotConnected = "client not connected"

// client is one pooled SDK naming client for one (servers, namespace,
// credentials) fingerprint, shared by all subscriptions through it. It is
// created without any I/O; start creates the SDK client in the background.
type client struct {
	log       *zap.Logger // shared by the client's subscriptions
	key       string      // in the pool
	name      string      // the server's name in the nacos app, "" for a source's own fields
	where     string      // addresses and namespace, for messages
	namespace string
	param     vo.NacosClientParam
	auth      string // "username", "access_key" or "", for messages
	tuning    *tuning

	upstreams.Runner // creates the SDK client, then follows its connection
	// leaving counts destructed subscriptions whose goroutine (final
	// Unsubscribe included) may still run.
	leaving sync.WaitGroup

	ready chan struct{} // closed once nc or createErr is set
	nc    namingClient
	// sdk is held around every Subscribe and Unsubscribe, and by the SDK
	// while it processes a push or re-subscribes on connecting.
	sdk sync.Mutex
	// createErr is a permanent failure to create the SDK client.
	createErr error

	healthy     atomic.Bool
	reachable   atomic.Bool  // ServerHealthy said so at the latest check
	connected   atomic.Int64 // unix nanos when the connection was last seen to come up
	reconnected atomic.Int64 // unix nanos of the latest reconnect
	// noGRPC is when a request first failed for want of a gRPC connection
	// while the server was reachable (unix nanos); 0 once one got through.
	noGRPC atomic.Int64
	// problem is the connection's: pending while connecting, a problem
	// while it is lost.
	problem *upstreams.Condition

	// link reports the connection state to the server's metrics.
	link *upstreams.Link
	// pace spaces the subscriptions' routine re-reads (see
	// tuning.reconcileRate).
	pace *rate.Limiter

	subscriptions upstreams.Members[*subscription] // the subscriptions through the client
	mu            sync.Mutex
	// gone holds, per service, the channel that the latest subscription to
	// leave closes once it has: see addSubscription.
	gone map[Reference]chan struct{}
}

// problem is a latest failure, shown to sources until it is cleared.
type problem struct{ err error }

func newClient(name string, param vo.NacosClientParam, tn *tuning) *client {
	addrs := make([]string, len(param.ServerConfigs))
	for i, s := range param.ServerConfigs {
		addrs[i] = fmt.Sprintf("%s:%d (gRPC %d)", s.IpAddr, s.Port, s.GrpcPort)
	}
	ns := param.ClientConfig.NamespaceId
	where := "nacos server at " + strings.Join(addrs, ", ")
	if name != "" { // a server of the nacos app, not a source's own fields
		where = fmt.Sprintf("nacos server %q at %s", name, strings.Join(addrs, ", "))
	}
	if ns != "" {
		where += fmt.Sprintf(", namespace %q", ns)
	}
	c := &client{
		name:      name,
		where:     where,
		namespace: ns,
		param:     param,
		tuning:    tn,
		ready:     make(chan struct{}),
		gone:      make(map[Reference]chan struct{}),
		link:      upstreams.NewLink("nacos", connectionName(name, param), publishSeconds),
		pace:      rate.NewLimiter(tn.reconcileRate, 1),
	}
	switch {
	case param.ClientConfig.Username != "":
		c.auth = "username"
	case param.ClientConfig.AccessKey != "":
		c.auth = "access_key"
	}
	c.log = caddy.Log().Named("nacos")
	c.problem = upstreams.NewCondition(c.log, "nacos connection problem", "connected to nacos server", zap.String("server", where))
	c.problem.Set(upstreams.Pending(fmt.Errorf("%s: connecting", where)))
	c.Init()
	return c
}

// start creates the SDK client in the background.
func (c *client) start() { c.Start(c.run) }

// run creates the SDK client, then watches its connection.
func (c *client) run() {
	redirectSDKLogs()
	var nc namingClient
	err := guard("creating the client", func() (err error) {
		nc, err = c.tuning.newNaming(c.param, &c.sdk)
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
	if c.Ctx.Err() != nil {
		return
	}

	t := time.NewTicker(c.tuning.healthInterval)
	defer t.Stop()
	protecting := c.protecting()
	for c.Until(t.C) {
		c.checkHealth(false)
		protecting = c.endProtection(protecting)
	}
}

// endProtection has the subscriptions whose views protect_threshold holds
// hand them their current list once protection has ended since the last
// check (was: it applied then), and reports whether it applies now. One
// check for the client, not a timer per subscription.
func (c *client) endProtection(was bool) bool {
	now := c.protecting()
	if was && !now {
		c.subscriptions.Each((*subscription).holding, func(w *subscription) { w.fan.Relist() })
	}
	return now
}

// checkHealth follows the connection state: it reports each problem with
// the connection once, and on reconnecting has every subscription re-read.
//
// ServerHealthy is true while the SDK's gRPC connection is up, but also
// while the server's HTTP API says it is up (the SDK asks both:
// clients/naming_client/naming_proxy_delegate.go:107-108 in v2.3.5), and
// subscriptions go over gRPC only. So after a server restart the server is
// reachable again before the SDK's gRPC reconnect, which waits between
// attempts, has come through; requests until then fail with
// sdkNotConnected. The subscriptions tell the client (lacksConnection,
// gotThrough), and only a gRPC connection that stays away for grpcGrace
// while the server answers is a problem, such as a wrong grpc_port.
func (c *client) checkHealth(first bool) {
	reachable := c.nc.ServerHealthy()
	c.reachable.Store(reachable)
	var down error
	switch at := c.noGRPC.Load(); {
	case !reachable:
		c.noGRPC.Store(0) // unreachable explains it
		what := "the connection was lost"
		if c.connected.Load() == 0 {
			what = "no connection could be made"
		}
		down = upstreams.Problem(upstreams.KindUnreachable, fmt.Errorf("cannot reach %s over gRPC: %s; check addresses and grpc_port, and that the server is up "+
			"(serving the last known instances meanwhile)", c.where, what))
	case at != 0 && time.Since(time.Unix(0, at)) >= c.tuning.grpcGrace:
		down = upstreams.Problem(upstreams.KindUnreachable, fmt.Errorf("cannot reach %s over gRPC: the server answers over HTTP, but no gRPC connection came up within %s; "+
			"check grpc_port (default: the port + 1000) and that it is reachable (serving the last known instances meanwhile)",
			c.where, c.tuning.grpcGrace))
	}
	now := down == nil
	c.link.SetConnected(now)
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
	case !now:
		c.setProblem(down) // logs only a new problem
	}
}

// lacksConnection reports whether a request failed for want of a
// connection rather than on its own: the SDK had no gRPC connection, or the
// server is known to be unreachable. Such a failure is the connection's
// problem, which checkHealth reports; a missing gRPC connection while the
// server is reachable is noted for it.
func (c *client) lacksConnection(err error) bool {
	if strings.Contains(err.Error(), sdkNotConnected) {
		if c.healthy.Load() {
			c.noGRPC.CompareAndSwap(0, time.Now().UnixNano())
		}
		return true
	}
	return !c.healthy.Load()
}

// gotThrough notes that a request reached the server over gRPC.
func (c *client) gotThrough() { c.noGRPC.Store(0) }

// protecting reports whether protect_threshold applies now: while the
// connection is down and for reconnectGrace after it came back.
func (c *client) protecting() bool {
	if !c.healthy.Load() {
		return true
	}
	at := c.reconnected.Load()
	return at != 0 && time.Since(time.Unix(0, at)) < c.tuning.reconnectGrace
}

// setProblem records the connection's problem, or its end (nil); its
// condition logs it once, and the subscriptions show it as their trouble.
func (c *client) setProblem(err error) {
	if c.problem.Set(err) {
		c.subscriptions.Each(nil, func(w *subscription) { w.fan.Troubled() })
	}
}

func (c *client) clearProblem() { c.setProblem(nil) }

// timeout is how long one request to the server may take.
func (c *client) timeout() time.Duration {
	if cc := c.param.ClientConfig; cc != nil && cc.TimeoutMs > 0 {
		return time.Duration(cc.TimeoutMs) * time.Millisecond
	}
	return defaultTimeout
}

// connProblem is the current connection problem, or nil.
func (c *client) connProblem() error {
	return c.problem.Err()
}

// addSubscription adds w to the client's subscriptions and returns a channel
// closed once the previous subscription to the same service has left, or
// nil if none is leaving.
func (c *client) addSubscription(w *subscription) (after <-chan struct{}) {
	c.subscriptions.Add(w)
	c.mu.Lock()
	defer c.mu.Unlock()
	if ch, ok := c.gone[w.ref]; ok {
		return ch
	}
	return nil
}

// removeSubscription removes w from the client's subscriptions and returns the
// channel to close once it has left: until then, a new subscription to the
// same service waits for it.
func (c *client) removeSubscription(w *subscription) (exited chan struct{}) {
	exited = make(chan struct{})
	c.subscriptions.Remove(w)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gone[w.ref] = exited
	return exited
}

// left notes that a subscription that removeSubscription removed has left.
func (c *client) left(ref Reference, exited chan struct{}) {
	close(exited)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.gone[ref] == exited {
		delete(c.gone, ref)
	}
}

func (c *client) kickAll() { c.subscriptions.Each(nil, (*subscription).kick) }

// Destruct stops the client once the last subscription through it is gone:
// it waits for the subscriptions still leaving (their final Unsubscribes),
// then closes the SDK client. It runs in a reload or shutdown, so it waits
// for none of it longer than closeTimeout, and not at all while the SDK
// client is still being created (a hung server holds that up for seconds):
// what is left finishes in the background, the SDK client closed in the
// end.
func (c *client) Destruct() error {
	c.link.Close()
	closed := make(chan struct{})
	go func() {
		defer close(closed)
		c.leaving.Wait() // the final Unsubscribes, while the client still runs
		c.Stop()
		if c.nc != nil {
			_ = guard("closing the client", func() error { c.nc.CloseClient(); return nil })
		}
	}()
	select {
	case <-c.ready:
	default:
		c.Cancel() // the subscriptions wait for a client that will not serve them
		return nil
	}
	t := time.NewTimer(c.tuning.closeTimeout)
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

// acquireClient returns the pooled client of param, for the server named
// name in the nacos app ("" for a source's own fields), creating it on tn
// if needed, and holds it for src: one per (server, namespace,
// credentials) and tuning, whatever else the server's settings say
// (reconcile_interval belongs to each source).
func acquireClient(src *upstreams.Source, name string, param vo.NacosClientParam, tn *tuning) (*client, error) {
	key := fmt.Sprintf("nacos/client/%s/%p", fingerprint(name, param), tn)
	return upstreams.Acquire(src, key, func() (*client, error) {
		c := newClient(name, param, tn)
		c.key = key
		return c, nil
	})
}
