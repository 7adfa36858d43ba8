package consul

import (
	"fmt"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddy-discovery/caddy-discovery/upstreams/upstreamstest"
)

// TestStopDoesNotWaitOnHungServer: a source whose Consul agent hangs (its
// long-poll waits for an answer that never comes) is cleaned up at once, as
// a reload or `caddy stop` cleans it up.
func TestStopDoesNotWaitOnHungServer(t *testing.T) {
	port := upstreamstest.HungServer(t)
	app := new(App)
	u := &ConsulUpstreams{Service: "web", Server: Server{Addresses: []string{fmt.Sprintf("127.0.0.1:%d", port)}}}
	if err := u.provision(caddy.Log(), app); err != nil {
		t.Fatal(err)
	}
	_ = app.Start()
	time.Sleep(300 * time.Millisecond) // the long-poll is sent, and hangs
	start := time.Now()
	if err := u.Cleanup(); err != nil {
		t.Errorf("Cleanup: %v", err)
	}
	if d := time.Since(start); d > 100*time.Millisecond {
		t.Errorf("Cleanup took %v with a hung agent, want at once", d)
	}
}
