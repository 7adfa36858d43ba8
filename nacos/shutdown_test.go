package nacos

import (
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
)

// hungServer listens on loopback and accepts connections that it never
// answers, as a hung Nacos server does (a stopped process's kernel still
// completes the handshake).
func hungServer(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return ln.Addr().(*net.TCPAddr).Port
}

// TestStopDoesNotWaitOnHungServer: a source whose Nacos server hangs (the
// real SDK client is still connecting) is cleaned up at once, as a reload
// or `caddy stop` cleans it up: nothing waits on the server.
func TestStopDoesNotWaitOnHungServer(t *testing.T) {
	port := hungServer(t)
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
