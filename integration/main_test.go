//go:build integration

// Integration tests against real registry servers, started on this machine
// by the scripts in this directory. Run them with
//
//	go test -race -tags integration ./integration/
//
// They need root (network namespaces) and build the servers on first use.
package integration

import (
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/caddy-discovery/caddy-discovery/integration/harness"
)

var (
	stopMu sync.Mutex
	stops  []func()
)

// atExit runs f after all tests, to stop shared servers.
func atExit(f func()) {
	stopMu.Lock()
	stops = append(stops, f)
	stopMu.Unlock()
}

func TestMain(m *testing.M) {
	code := m.Run()
	for i := len(stops) - 1; i >= 0; i-- {
		stops[i]()
	}
	os.Exit(code)
}

var (
	kubeOnce sync.Once
	kube     *harness.Kube
	kubeErr  error
)

// sharedKube is the control plane most Kubernetes tests share, started on
// first use and stopped after all tests.
func sharedKube(t testing.TB) *harness.Kube {
	t.Helper()
	kubeOnce.Do(func() {
		dir, err := os.MkdirTemp("", "caddy-discovery-kube-")
		if err != nil {
			kubeErr = err
			return
		}
		kube, kubeErr = harness.StartKube(filepath.Join(dir, "main"), 16443, 23790)
		atExit(func() {
			if kube != nil {
				_ = kube.Stop()
			}
			_ = os.RemoveAll(dir)
		})
	})
	if kubeErr != nil {
		t.Fatalf("starting the Kubernetes control plane: %v", kubeErr)
	}
	return kube
}
