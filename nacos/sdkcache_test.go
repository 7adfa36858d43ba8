package nacos

import (
	"slices"
	"sync"
	"testing"

	"github.com/nacos-group/nacos-sdk-go/v2/clients/naming_client/naming_cache"
	"github.com/nacos-group/nacos-sdk-go/v2/common/remote/rpc"
	"github.com/nacos-group/nacos-sdk-go/v2/common/remote/rpc/rpc_request"
	"github.com/nacos-group/nacos-sdk-go/v2/common/remote/rpc/rpc_response"
	"github.com/nacos-group/nacos-sdk-go/v2/model"
	"github.com/nacos-group/nacos-sdk-go/v2/vo"
)

// processing stands in for the SDK's own push handler and Subscribe: each
// hands a list to the holder's ProcessService, which caches it and calls
// back. (The SDK's push handler also logs the push's connection, which
// needs a connected client.)
type processing struct {
	namingClient // the rest, unused
	holder       *naming_cache.ServiceInfoHolder
	list         model.Service // what the next Subscribe gets from the "server"
}

func (p *processing) Name() string { return "test" }

func (p *processing) RequestReply(r rpc_request.IRequest, _ *rpc.RpcClient) rpc_response.IResponse {
	p.holder.ProcessService(&r.(*rpc_request.NotifySubscriberRequest).ServiceInfo)
	return &rpc_response.NotifySubscriberResponse{Response: &rpc_response.Response{ResultCode: 200, Success: true}}
}

func (p *processing) Subscribe(*vo.SubscribeParam) error {
	svc := p.list
	p.holder.ProcessService(&svc)
	return nil
}

func (p *processing) Unsubscribe(*vo.SubscribeParam) error { return nil }

// TestSDKCacheTrimmed: the SDK's cache is empty after every Subscribe and
// push, yet a push older than the list last processed is still dropped, as
// the SDK drops it with the list cached; once unsubscribed, nothing is kept.
func TestSDKCacheTrimmed(t *testing.T) {
	redirectSDKLogs()
	holder := naming_cache.NewServiceInfoHolder("", t.TempDir(), true, true)
	var got []uint16
	callback := func(list []model.Instance, _ error) {
		for _, in := range list {
			got = append(got, uint16(in.Port))
		}
	}
	param := &vo.SubscribeParam{ServiceName: "orders", GroupName: "DEFAULT_GROUP", SubscribeCallback: callback}
	holder.RegisterCallback("DEFAULT_GROUP@@orders", "", naming_cache.NewSubscribeCallbackFuncWrapper(naming_cache.NewClusterSelector(nil), &param.SubscribeCallback))
	list := func(port uint64, at uint64) model.Service {
		return model.Service{Name: "orders", GroupName: "DEFAULT_GROUP", LastRefTime: at,
			Hosts: []model.Instance{{Ip: "10.0.0.1", Port: port, Weight: 1, Healthy: true, Enable: true}}}
	}
	sdk := &processing{holder: holder, list: list(1, 100)}
	cache := newSDKCache(holder)
	client := trimmed{namingClient: sdk, cache: cache}
	var mu sync.Mutex
	push := serialPush{mu: &mu, cache: cache, next: sdk}
	send := func(svc model.Service) {
		push.RequestReply(&rpc_request.NotifySubscriberRequest{ServiceInfo: svc}, nil)
	}
	cached := func() (n int) {
		holder.ServiceInfoMap.Range(func(any, any) bool { n++; return true })
		holder.UpdateTimeMap.Range(func(any, any) bool { n++; return true })
		return n
	}

	if err := client.Subscribe(param); err != nil {
		t.Fatal(err)
	}
	send(list(2, 110))
	send(list(3, 105)) // older than 110: dropped
	send(list(4, 110)) // as old: dropped
	send(list(5, 120))
	if want := []uint16{1, 2, 5}; !slices.Equal(got, want) {
		t.Errorf("lists called back: %v, want %v", got, want)
	}
	if n := cached(); n != 0 {
		t.Errorf("the SDK caches %d entries, want none", n)
	}
	if cache.newest["DEFAULT_GROUP@@orders"] != 120 {
		t.Errorf("newest = %v, want orders at 120", cache.newest)
	}

	// A re-read (Unsubscribe, then Subscribe) takes the server's list and
	// its time.
	sdk.list = list(6, 130)
	_ = client.Unsubscribe(param)
	_ = client.Subscribe(param)
	send(list(7, 125)) // a push sent before the re-read: dropped
	if want := []uint16{1, 2, 5, 6}; !slices.Equal(got, want) {
		t.Errorf("lists called back: %v, want %v", got, want)
	}

	_ = client.Unsubscribe(param)
	if len(cache.newest) != 0 || cached() != 0 {
		t.Errorf("after the last Unsubscribe: newest %v, %d SDK cache entries; want nothing", cache.newest, cached())
	}
}
