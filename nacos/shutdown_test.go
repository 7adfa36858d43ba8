package nacos

import (
	"fmt"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddy-discovery/caddy-discovery/upstreams/upstreamstest"
)

// TestStopDoesNotWaitOnHungServer: a source whose Nacos server hangs (the
// real SDK client is still connecting) is cleaned up at once, as a reload
// or `caddy stop` cleans it up: nothing waits on the server.
func TestStopDoesNotWaitOnHungServer(t *testing.T) {
	port := upstreamstest.HungServer(t)
	app := new(App)
	u := &NacosUpstreams{Service: "web", Server: Server{
		Addresses: []string{fmt.Sprintf("127.0.0.1:%d", port)}, GRPCPort: port, Timeout: caddy.Duration(3 * time.Second),
	}}
	if err := u.provision(caddy.Log(), app); err != nil {
		t.Fatal(err)
	}
	_ = app.Start()
	time.Sleep(time.Second) // the SDK client connects, and hangs
	start := time.Now()
	err := u.Cleanup()
	if d := time.Since(start); d > 100*time.Millisecond {
		t.Errorf("Cleanup took %v with a hung server, want at once", d)
	}
	if err != nil {
		t.Errorf("Cleanup: %v", err)
	}
}
