package kubernetes

import (
	"fmt"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"k8s.io/client-go/kubernetes"

	"github.com/caddy-discovery/caddy-discovery/upstreams/upstreamstest"
)

// TestStopDoesNotWaitOnHungServer: a source whose API server hangs (the
// informers' first lists wait for a TLS handshake that never comes) is
// cleaned up at once, as a reload or `caddy stop` cleans it up.
func TestStopDoesNotWaitOnHungServer(t *testing.T) {
	port := upstreamstest.HungServer(t)
	conn := Connection{APIServer: fmt.Sprintf("https://127.0.0.1:%d", port), InsecureSkipVerify: true}
	cfg, fp, err := conn.restConfig("hung")
	if err != nil {
		t.Fatal(err)
	}
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	app, u := new(App), new(KubernetesUpstreams)
	if err := u.subscribe(caddy.Log(), app, "hung", fp, client, Reference{Namespace: "shop", Name: "web"}, selection{target: targetEndpoints}); err != nil {
		t.Fatal(err)
	}
	_ = app.Start()
	time.Sleep(300 * time.Millisecond) // the lists are sent, and hang
	start := time.Now()
	if err := u.Cleanup(); err != nil {
		t.Errorf("Cleanup: %v", err)
	}
	if d := time.Since(start); d > 100*time.Millisecond {
		t.Errorf("Cleanup took %v with a hung API server, want at once", d)
	}
}
