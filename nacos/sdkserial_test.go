package nacos

import (
	"sync"
	"testing"

	"github.com/nacos-group/nacos-sdk-go/v2/clients"
	"github.com/nacos-group/nacos-sdk-go/v2/common/constant"
	"github.com/nacos-group/nacos-sdk-go/v2/vo"
)

// TestSerializeFindsTheSDKsInternals: serialize reaches the push handler and
// connection listener of the SDK version in go.mod. If an SDK upgrade moves
// them, this fails: check whether the new version still races (#818) and
// drop or adapt sdkserial.go.
func TestSerializeFindsTheSDKsInternals(t *testing.T) {
	redirectSDKLogs()
	nc, err := clients.NewNamingClient(unreachable(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.CloseClient()
	cache, err := serialize(nc, new(sync.Mutex))
	if err != nil {
		t.Fatalf("serialize: %v", err)
	}
	if cache.holder == nil {
		t.Fatal("serialize found no cache to trim")
	}
}

// TestSDKClientsCreateWhileOthersClose: SDK clients created while others
// close, as a reload that changes the servers does. nacos-sdk-go v2.3.5
// deletes a closing client from its process-wide client map without the
// lock that creating one takes; -race reports that unless the tuning's
// newNaming serializes the two (sdkClients). Without -race this can abort
// the process ("concurrent map read and map write").
func TestSDKClientsCreateWhileOthersClose(t *testing.T) {
	redirectSDKLogs()
	newNaming := defaultTuning().newNaming
	dir := t.TempDir()
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			for range 10 {
				c, err := newNaming(unreachable(dir), new(sync.Mutex)) // the SDK writes into it: one each
				if err != nil {
					t.Error(err)
					return
				}
				c.CloseClient()
			}
		})
	}
	wg.Wait()
}

// unreachable is the parameters of an SDK client whose server does not
// exist: nothing listens there, so the client starts without a connection.
func unreachable(dir string) vo.NacosClientParam {
	return vo.NacosClientParam{
		ClientConfig: &constant.ClientConfig{
			TimeoutMs: 200, NotLoadCacheAtStart: true, CacheDir: dir, LogDir: dir,
		},
		ServerConfigs: []constant.ServerConfig{{IpAddr: "127.0.0.1", Port: 1, GrpcPort: 1}},
	}
}
