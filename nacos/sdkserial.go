package nacos

import (
	"errors"
	"fmt"
	"reflect"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/caddyserver/caddy/v2"
	"github.com/nacos-group/nacos-sdk-go/v2/clients"
	"github.com/nacos-group/nacos-sdk-go/v2/clients/naming_client"
	"github.com/nacos-group/nacos-sdk-go/v2/clients/naming_client/naming_cache"
	"github.com/nacos-group/nacos-sdk-go/v2/clients/naming_client/naming_grpc"
	"github.com/nacos-group/nacos-sdk-go/v2/clients/naming_client/naming_proxy"
	"github.com/nacos-group/nacos-sdk-go/v2/common/constant"
	"github.com/nacos-group/nacos-sdk-go/v2/common/remote/rpc"
	"github.com/nacos-group/nacos-sdk-go/v2/common/remote/rpc/rpc_request"
	"github.com/nacos-group/nacos-sdk-go/v2/common/remote/rpc/rpc_response"
	"github.com/nacos-group/nacos-sdk-go/v2/util"
	"github.com/nacos-group/nacos-sdk-go/v2/vo"
	"go.uber.org/zap"
)

// An SDK naming client processes a service's instance list on three
// goroutines: the gRPC push handler, its own re-subscription of every
// service after each (re)connect, and Subscribe on the caller's. In
// nacos-sdk-go v2.3.5 they are not exclusive: ServiceInfoHolder.ProcessService
// sorts the cached list in place while a concurrent call marshals it to the
// disk cache or hands it to our callback (nacos-sdk-go #818; fixed upstream
// by #903 after v2.3.5, a version the module proxy does not serve). -race
// reports it, and without -race a callback can copy a list mid-sort, with one
// instance twice and another missing until the next change.
//
// The client runs all three under one mutex (client.sdk). The SDK offers no
// hook for this, so serialize reaches its push handler and connection
// listener through unexported fields and puts wrappers holding the mutex in
// their place; sdkserial_test.go fails if an SDK version moves them. One
// window is left: NewNamingClient connects before serialize runs, and the
// SDK delivers that connect on its own goroutine, which may have read the
// listeners before serialize replaced them. That re-subscription runs
// unlocked, but it re-subscribes only what was subscribed when it started:
// nothing, unless its goroutine stalled until our first Subscribe.

// The SDK's clients also share state without locks. It keeps every
// client's connection in a process-wide map, which NewNamingClient adds to
// under the SDK's lock but CloseClient deletes from without it
// (RpcClient.Shutdown), and it looks up the local IP for its requests once,
// lazily, in an unguarded global (util.LocalIP). A client created while
// another closes (a reload that changes a server's settings) races on the
// map, and Go aborts the process on such a race when it catches it
// ("concurrent map read and map write"). So a close excludes everything
// else (sdkClients.Lock) while creations, which the SDK's lock already
// keeps apart, may run together (RLock): a server set that hangs while its
// client connects (up to 3 × 3 s) delays closes, never the other server
// sets' clients. The first creation settles the local IP before any client
// runs. A close can hang while the SDK re-subscribes to an unreachable
// server (nacos-sdk-go #912), for at most the request timeout here, since
// our own subscriptions are gone before a client closes. Both run on
// background goroutines, never in a reload.
var (
	sdkClients sync.RWMutex
	localIP    sync.Once
)

// newSDKClient creates an SDK naming client whose processing of pushes and
// re-subscriptions holds sdk (see serialize) and which closes exclusively
// (see sdkClients).
func newSDKClient(p vo.NacosClientParam, sdk *sync.Mutex) (namingClient, error) {
	sdkClients.RLock()
	defer sdkClients.RUnlock()
	localIP.Do(func() { util.LocalIP() })
	c, err := clients.NewNamingClient(p)
	if err != nil {
		return nil, err
	}
	cache, err := serialize(c, sdk)
	if err != nil {
		// Another SDK version than go.mod's: its own locking is all there
		// is (v2.3.5's races are fixed upstream), and its cache stays whole.
		caddy.Log().Named("nacos").Debug("nacos client not serialized", zap.Error(err))
		return closeExclusive{c}, nil
	}
	return trimmed{closeExclusive{c}, cache}, nil
}

// closeExclusive is an SDK naming client that closes holding sdkClients.
type closeExclusive struct{ naming_client.INamingClient }

func (c closeExclusive) CloseClient() {
	sdkClients.Lock()
	defer sdkClients.Unlock()
	c.INamingClient.CloseClient()
}

// serialize makes the push handler and connection listener of the SDK
// client c hold mu, and returns the client's cache, which the push handler
// trims (see sdkCache). It returns an error, having changed nothing, when c
// is not laid out as in nacos-sdk-go v2.3.5.
func serialize(c naming_client.INamingClient, mu *sync.Mutex) (*sdkCache, error) {
	nc, ok := c.(*naming_client.NamingClient)
	if !ok {
		return nil, fmt.Errorf("naming client is a %T, not a *NamingClient", c)
	}
	proxy, err := fieldOf[naming_proxy.INamingProxy](nc, "serviceProxy")
	if err != nil {
		return nil, err
	}
	delegate, ok := proxy.(*naming_client.NamingProxyDelegate)
	if !ok {
		return nil, fmt.Errorf("naming proxy is a %T, not a *NamingProxyDelegate", proxy)
	}
	grpc, err := fieldOf[*naming_grpc.NamingGrpcProxy](delegate, "grpcClientProxy")
	if err != nil {
		return nil, err
	}
	conn, err := fieldOf[rpc.IRpcClient](grpc, "rpcClient")
	if err != nil {
		return nil, err
	}
	holder, err := fieldOf[*naming_cache.ServiceInfoHolder](grpc, "serviceInfoHolder")
	if err != nil {
		return nil, err
	}
	redo, err := fieldOf[*naming_grpc.ConnectionEventListener](grpc, "eventListener")
	if err != nil {
		return nil, err
	}
	if conn == nil || holder == nil || redo == nil {
		return nil, errors.New("naming gRPC proxy is not fully set up")
	}
	rc := conn.GetRpcClient()
	listeners, err := fieldPtr[atomic.Value](rc, "connectionEventListeners")
	if err != nil {
		return nil, err
	}
	list, _ := listeners.Load().([]rpc.IConnectionEventListener)
	i := -1
	for j, l := range list {
		if l == rpc.IConnectionEventListener(redo) {
			i = j
		}
	}
	if i < 0 {
		return nil, errors.New("the naming connection listener is not registered")
	}
	cache := newSDKCache(holder)
	wrapped := append([]rpc.IConnectionEventListener(nil), list...)
	wrapped[i] = serialListener{mu: mu, next: redo}
	listeners.Store(wrapped)
	// As NewNamingGrpcProxy registers it, with the handler held.
	rc.RegisterServerRequestHandler(func() rpc_request.IRequest {
		return &rpc_request.NotifySubscriberRequest{NamingRequest: &rpc_request.NamingRequest{}}
	}, serialPush{mu: mu, cache: cache, next: &rpc.NamingPushRequestHandler{ServiceInfoHolder: holder}})
	return cache, nil
}

// serialPush handles a server push with the mutex held: one older than
// the list last processed is acknowledged and dropped, as the SDK drops it
// while it has the service cached, and the cache is trimmed after the
// others.
type serialPush struct {
	mu    *sync.Mutex
	cache *sdkCache
	next  rpc.IServerRequestHandler
}

func (h serialPush) Name() string { return h.next.Name() }

func (h serialPush) RequestReply(r rpc_request.IRequest, c *rpc.RpcClient) rpc_response.IResponse {
	h.mu.Lock()
	defer h.mu.Unlock()
	if push, ok := r.(*rpc_request.NotifySubscriberRequest); ok && h.cache.stale(&push.ServiceInfo) {
		return &rpc_response.NotifySubscriberResponse{
			Response: &rpc_response.Response{ResultCode: constant.RESPONSE_CODE_SUCCESS, Success: true},
		}
	}
	defer h.cache.trim()
	return h.next.RequestReply(r, c)
}

// serialListener re-subscribes on a (re)connect with the mutex held.
type serialListener struct {
	mu   *sync.Mutex
	next rpc.IConnectionEventListener
}

func (l serialListener) OnConnected() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.next.OnConnected()
}

func (l serialListener) OnDisConnect() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.next.OnDisConnect()
}

// fieldOf reads the field name of the struct p points to; the field must
// have type T and must not change after construction.
func fieldOf[T any](p any, name string) (T, error) {
	f, err := fieldPtr[T](p, name)
	if err != nil {
		var zero T
		return zero, err
	}
	return *f, nil
}

// fieldPtr points to the field name, of type T, of the struct p points to.
func fieldPtr[T any](p any, name string) (*T, error) {
	v := reflect.ValueOf(p)
	if v.Kind() != reflect.Pointer || v.IsNil() || v.Elem().Kind() != reflect.Struct {
		return nil, fmt.Errorf("%T is not a pointer to a struct", p)
	}
	f := v.Elem().FieldByName(name)
	if !f.IsValid() || f.Type() != reflect.TypeFor[T]() {
		return nil, fmt.Errorf("%T has no field %s of type %v", p, name, reflect.TypeFor[T]())
	}
	return (*T)(unsafe.Pointer(f.UnsafeAddr())), nil
}
