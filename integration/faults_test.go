//go:build integration

// Fault tests (issue 10): the registries are killed, restarted, emptied and
// hung under a bounded request loop, and Caddy is reloaded under load. Each
// counts the failed requests to backends that stayed up (every backend
// stays up, so every failed request counts; it must be 0) and the time from
// the registry's recovery until a change made meanwhile is served. That
// target is 2 s; the tests report the figure on a line starting "fault:"
// (grep for it) and fail only well above it (10 s), as CI machines are
// noisy: a recovery between 2 s and 10 s is a finding to read in the
// figures, not a test failure.
//
// The Kubernetes fault tests use a control plane of their own (faultKube),
// with a second API server on the same etcd: the test's way to change
// EndpointSlices while the API server that Caddy talks to is down or hung.
// Tests that make nacos-sdk-go clients reconnect skip under -race (see
// TestNacosServerRestart); .ci/run runs them again without it.
package integration

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"

	"github.com/caddy-discovery/caddy-discovery/integration/harness"
)

// Ports of the fault tests' own servers, apart from the shared ones
// (16443/23790, 18848), TestKubernetesMultiCluster's (16444/23800),
// TestNacosServerRestart's (28848) and the demo's; Caddy listens on a port
// of its own too.
const (
	faultCaddyPort    = 18100
	faultKubePort     = 16453 // the API server Caddy talks to ("A")
	faultKubePortB    = 16454 // a second API server on the same etcd ("B")
	faultEtcdPort     = 23820 // and 23821 (peer)
	faultNacosPort    = 25848 // gRPC 26848, Polaris's own gRPC 27848
	faultRecoveryFail = 10 * time.Second
)

// faultPlane is a control plane of the fault tests' own: start-kube.sh's
// etcd, API server A (Caddy's) and controller-manager, plus API server B,
// launched with A's command line on another port.
type faultPlane struct {
	*harness.Kube                      // through A
	B             kubernetes.Interface // through B
	ready         *http.Client         // for /readyz, with A's CA
}

var (
	faultKubeOnce sync.Once
	faultKubeP    *faultPlane
	faultKubeErr  error
)

// faultKube starts the fault tests' control plane on first use; it is
// stopped after all tests.
func faultKube(t testing.TB) *faultPlane {
	t.Helper()
	faultKubeOnce.Do(func() { faultKubeP, faultKubeErr = startFaultKube() })
	if faultKubeErr != nil {
		t.Fatalf("starting the fault tests' control plane: %v", faultKubeErr)
	}
	return faultKubeP
}

func startFaultKube() (*faultPlane, error) {
	dir, err := os.MkdirTemp("", "caddy-discovery-faultkube-")
	if err != nil {
		return nil, err
	}
	k, err := harness.StartKube(filepath.Join(dir, "fault"), faultKubePort, faultEtcdPort)
	atExit(func() {
		if pid, err := readPid(filepath.Join(dir, "fault"), "kube-apiserver-b"); err == nil {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		if k != nil {
			_ = k.Stop()
		}
		_ = os.RemoveAll(dir)
	})
	if err != nil {
		return nil, err
	}
	p := &faultPlane{Kube: k}
	pem, err := os.ReadFile(k.CAFile)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	p.ready = &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool}, DisableKeepAlives: true}}

	// B: A's command line with B's port.
	pid, err := readPid(k.Dir, "kube-apiserver")
	if err != nil {
		return nil, err
	}
	argv, err := procCmdline(pid)
	if err != nil {
		return nil, err
	}
	port := fmt.Sprintf("--secure-port=%d", faultKubePort)
	i := slices.Index(argv, port)
	if i < 0 {
		return nil, fmt.Errorf("kube-apiserver's command line has no %s: %q", port, argv)
	}
	argv[i] = fmt.Sprintf("--secure-port=%d", faultKubePortB)
	if _, err := relaunch(k.Dir, "kube-apiserver-b", argv); err != nil {
		return nil, err
	}
	serverB := fmt.Sprintf("https://127.0.0.1:%d", faultKubePortB)
	if !harness.WaitFor(90*time.Second, func() bool { return p.apiReady(serverB) }) {
		return nil, fmt.Errorf("the second API server at %s is not ready after 90s; see %s", serverB, filepath.Join(k.Dir, "kube-apiserver-b.log"))
	}
	p.B, err = kubernetes.NewForConfig(&rest.Config{Host: serverB, BearerToken: k.AdminToken,
		TLSClientConfig: rest.TLSClientConfig{CAFile: k.CAFile}, Timeout: 5 * time.Second})
	if err != nil {
		return nil, err
	}
	return p, nil
}

// apiReady reports whether the API server at server answers /readyz.
func (p *faultPlane) apiReady(server string) bool {
	req, _ := http.NewRequest(http.MethodGet, server+"/readyz", nil)
	req.Header.Set("Authorization", "Bearer "+p.AdminToken)
	resp, err := p.ready.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// etcdReady reports whether etcd answers /health.
func etcdReady() bool {
	resp, err := (&http.Client{Timeout: 2 * time.Second}).Get(fmt.Sprintf("http://127.0.0.1:%d/health", faultEtcdPort))
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// app is the k8s app with the cluster "default" at API server A.
func (p *faultPlane) app() string {
	return fmt.Sprintf(`"k8s": {"clusters": {"default": {"server": %q, "token": %q, "ca_file": %q}}}`, p.Server, p.AdminToken, p.CAFile)
}

// stopComponent sends sig to a component of the plane (a start-kube.sh pid
// file name: etcd, kube-apiserver) and waits until it has exited. It
// returns the component's command line, to start it again with.
func (p *faultPlane) stopComponent(t testing.TB, name string, sig syscall.Signal) []string {
	t.Helper()
	pid, err := readPid(p.Dir, name)
	if err != nil {
		t.Fatal(err)
	}
	argv, err := procCmdline(pid)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(pid, sig); err != nil {
		t.Fatalf("signalling %s (pid %d): %v", name, pid, err)
	}
	if !harness.WaitFor(20*time.Second, func() bool { return !procAlive(pid) }) {
		t.Fatalf("%s (pid %d) still runs 20s after SIG%v", name, pid, sig)
	}
	return argv
}

// startComponent starts a component again with its command line.
func (p *faultPlane) startComponent(t testing.TB, name string, argv []string) {
	t.Helper()
	if _, err := relaunch(p.Dir, name, argv); err != nil {
		t.Fatal(err)
	}
}

// signal sends sig to a component of the plane.
func (p *faultPlane) signal(t testing.TB, name string, sig syscall.Signal) {
	t.Helper()
	pid, err := readPid(p.Dir, name)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(pid, sig); err != nil {
		t.Fatalf("signalling %s (pid %d): %v", name, pid, err)
	}
}

// readPid reads dir/name.pid, as start-kube.sh and start-polaris.sh write it.
func readPid(dir, name string) (int, error) {
	b, err := os.ReadFile(filepath.Join(dir, name+".pid"))
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(strings.TrimSpace(string(b)))
}

// procCmdline is a process's command line.
func procCmdline(pid int) ([]string, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return nil, err
	}
	return strings.Split(strings.TrimSuffix(string(b), "\x00"), "\x00"), nil
}

// procAlive reports whether a process exists and is not a zombie (a
// process whose parent exited may never be reaped in a container).
func procAlive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}

// relaunch starts argv in a session of its own, as start-kube.sh does:
// output appended to dir/name.log, pid in dir/name.pid (so that
// stop-kube.sh stops it). The test process reaps it.
func relaunch(dir, name string, argv []string) (int, error) {
	log, err := os.OpenFile(filepath.Join(dir, name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return 0, err
	}
	defer log.Close()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("starting %s: %w", name, err)
	}
	go func() { _ = cmd.Wait() }()
	pid := cmd.Process.Pid
	if err := os.WriteFile(filepath.Join(dir, name+".pid"), []byte(strconv.Itoa(pid)+"\n"), 0o644); err != nil {
		return 0, err
	}
	return pid, nil
}

// manualService creates, in namespace ns, the selector-less Service web
// (port http: 8080) and its EndpointSlice "web-manual" listing addrs: the
// test manages the endpoints, so that no controller (which talks to A)
// takes part.
func (p *faultPlane) manualService(t *testing.T, ns string, addrs ...netip.Addr) {
	t.Helper()
	p.Namespace(t, ns)
	svc := webService(ns)
	svc.Spec.Selector = nil
	p.Service(t, svc)
	es := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: ns, Name: "web-manual", Labels: map[string]string{discoveryv1.LabelServiceName: "web"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To[int32](8080)}},
		Endpoints:   endpoints(addrs),
	}
	if _, err := p.Client.DiscoveryV1().EndpointSlices(ns).Create(t.Context(), es, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func endpoints(addrs []netip.Addr) []discoveryv1.Endpoint {
	var eps []discoveryv1.Endpoint
	for _, a := range addrs {
		eps = append(eps, discoveryv1.Endpoint{Addresses: []string{a.String()}})
	}
	return eps
}

// setEndpoints writes the addresses into ns's EndpointSlice through c,
// retrying until the API server accepts the write or timeout passes; it
// returns when the write was accepted.
func setEndpoints(t *testing.T, c kubernetes.Interface, ns string, timeout time.Duration, addrs ...netip.Addr) time.Time {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		es, err := c.DiscoveryV1().EndpointSlices(ns).Get(t.Context(), "web-manual", metav1.GetOptions{})
		if err == nil {
			es.Endpoints = endpoints(addrs)
			if _, err = c.DiscoveryV1().EndpointSlices(ns).Update(t.Context(), es, metav1.UpdateOptions{}); err == nil {
				return time.Now()
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("writing the EndpointSlice of %s: %v", ns, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// traffic is a bounded request loop through Caddy: one request at a time,
// to each host in turn, every outcome recorded. Every backend stays up in
// the fault tests, so any request that does not reach one of the allowed
// backends is a failure.
type traffic struct {
	stop    atomic.Bool
	done    chan struct{}
	mu      sync.Mutex
	samples []sample
}

type sample struct {
	host, got string
	start     time.Time
	d         time.Duration
	err       error
}

// trafficLimit bounds every request loop, whatever the test does.
const trafficLimit = 5 * time.Minute

func startTraffic(t *testing.T, c *harness.Caddy, allowed []string, hosts ...string) *traffic {
	tr := &traffic{done: make(chan struct{})}
	go func() {
		defer close(tr.done)
		end := time.Now().Add(trafficLimit)
		for i := 0; !tr.stop.Load() && time.Now().Before(end); i++ {
			host := hosts[i%len(hosts)]
			start := time.Now()
			got, err := c.Get(host)
			s := sample{host: host, got: got, start: start, d: time.Since(start), err: err}
			if err == nil && !slices.Contains(allowed, got) {
				s.err = fmt.Errorf("answered by %q, not one of the backends %v", got, allowed)
			}
			tr.mu.Lock()
			tr.samples = append(tr.samples, s)
			tr.mu.Unlock()
			time.Sleep(2 * time.Millisecond)
		}
	}()
	t.Cleanup(tr.Stop)
	return tr
}

// Stop ends the loop and waits for it; it is safe to call twice.
func (tr *traffic) Stop() {
	tr.stop.Store(true)
	<-tr.done
}

// between returns the samples of requests started in [from, to).
func (tr *traffic) between(from, to time.Time) []sample {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	var out []sample
	for _, s := range tr.samples {
		if !s.start.Before(from) && s.start.Before(to) {
			out = append(out, s)
		}
	}
	return out
}

// failures counts the failed requests among samples and describes the first.
func failures(samples []sample) (n int, first string) {
	for _, s := range samples {
		if s.err != nil {
			if n == 0 {
				first = fmt.Sprintf("%s at %s: %v", s.host, s.start.Format("15:04:05.000"), s.err)
			}
			n++
		}
	}
	return n, first
}

// firstSeen waits up to timeout for a request to host started after since
// that backend name answered, and returns when that request started.
func (tr *traffic) firstSeen(host, name string, since time.Time, timeout time.Duration) (time.Time, bool) {
	deadline := time.Now().Add(timeout)
	for {
		tr.mu.Lock()
		for _, s := range tr.samples {
			if s.host == host && s.got == name && s.err == nil && !s.start.Before(since) {
				tr.mu.Unlock()
				return s.start, true
			}
		}
		tr.mu.Unlock()
		if time.Now().After(deadline) {
			return time.Time{}, false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// percentile is the q-quantile of the samples' latencies.
func percentile(samples []sample, q float64) time.Duration {
	if len(samples) == 0 {
		return 0
	}
	ds := make([]time.Duration, len(samples))
	for i, s := range samples {
		ds[i] = s.d
	}
	slices.Sort(ds)
	return ds[min(len(ds)-1, int(q*float64(len(ds))))]
}

// expectServed polls until a spread of requests to host reaches exactly the
// named backends.
func expectServed(t *testing.T, c *harness.Caddy, host string, timeout time.Duration, want ...string) {
	t.Helper()
	slices.Sort(want)
	harness.Eventually(t, timeout, func() error {
		got := map[string]int{}
		for range 6 * len(want) {
			name, err := c.Get(host)
			if err != nil {
				name = "error: " + err.Error()
			}
			got[name]++
		}
		if names := harness.Names(got); !slices.Equal(names, want) {
			return fmt.Errorf("requests to %s reached %v, want exactly %v", host, got, want)
		}
		return nil
	})
}

// checkTraffic stops the loop, reports its figures and fails on any failed
// request.
func checkTraffic(t *testing.T, tr *traffic, what string) {
	t.Helper()
	tr.Stop()
	all := tr.between(time.Time{}, time.Now().Add(time.Hour))
	n, first := failures(all)
	t.Logf("fault: %s: %d requests, %d failed", what, len(all), n)
	if n > 0 {
		t.Errorf("%s: %d of %d requests to backends that stayed up failed; first: %s", what, n, len(all), first)
	}
}

// checkRecovery reports the time from recovery until the change was served,
// and fails only well above the 2 s target.
func checkRecovery(t *testing.T, what string, recovered, served time.Time, ok bool) {
	t.Helper()
	if !ok {
		t.Errorf("fault: %s: the change made meanwhile was not served within %v of recovery", what, faultRecoveryFail)
		return
	}
	d := served.Sub(recovered)
	t.Logf("fault: %s: change served %v after recovery (target 2s)", what, d.Round(time.Millisecond))
	if d > faultRecoveryFail {
		t.Errorf("%s: the change made meanwhile was served %v after recovery, more than %v", what, d, faultRecoveryFail)
	}
}

// TestFaultAPIServerKilled: the API server that Caddy watches through is
// killed (SIGKILL) under traffic, an EndpointSlice changes through the
// other API server while it is down, and it is started again. No request
// fails, and the change is served soon after the API server is back.
func TestFaultAPIServerKilled(t *testing.T) {
	p := faultKube(t)
	n := harness.NewNetns(t)
	a, b, c := n.AddAddr(t), n.AddAddr(t), n.AddAddr(t)
	n.Backend(t, "a", a, 8080)
	n.Backend(t, "b", b, 8080)
	n.Backend(t, "c", c, 8080)
	p.manualService(t, "fault-kill", a, b)

	cd := harness.StartCaddy(t, faultCaddyPort, k8sProxy(map[string]any{"service": "fault-kill/web:http"}), p.app())
	cd.ExpectBackends(t, 10*time.Second, "a", "b")
	tr := startTraffic(t, cd, []string{"a", "b", "c"}, "")
	time.Sleep(time.Second)

	argv := p.stopComponent(t, "kube-apiserver", syscall.SIGKILL)
	killed := time.Now()
	setEndpoints(t, p.B, "fault-kill", 10*time.Second, a, c)
	time.Sleep(2 * time.Second) // traffic while it is down
	p.startComponent(t, "kube-apiserver", argv)
	if !harness.WaitFor(90*time.Second, func() bool { return p.apiReady(p.Server) }) {
		t.Fatal("the API server is not ready 90s after its restart")
	}
	back := time.Now()
	t.Logf("fault: API server killed: down for %v (restart took %v)", back.Sub(killed).Round(time.Millisecond), back.Sub(killed.Add(2*time.Second)).Round(time.Millisecond))
	served, ok := tr.firstSeen("", "c", back, faultRecoveryFail)
	checkRecovery(t, "API server killed and restarted", back, served, ok)
	cd.ExpectBackends(t, 30*time.Second, "a", "c")
	checkTraffic(t, tr, "API server killed and restarted")
}

// TestFaultEtcdRestarted: etcd stops (SIGTERM) and starts again under the
// running API server, with traffic flowing. No request fails. Nothing can be
// written while etcd is down, so the change is written as soon as the API
// server accepts writes again, and the time is taken from etcd's recovery.
func TestFaultEtcdRestarted(t *testing.T) {
	p := faultKube(t)
	n := harness.NewNetns(t)
	a, b, c := n.AddAddr(t), n.AddAddr(t), n.AddAddr(t)
	n.Backend(t, "a", a, 8080)
	n.Backend(t, "b", b, 8080)
	n.Backend(t, "c", c, 8080)
	p.manualService(t, "fault-etcd", a, b)

	cd := harness.StartCaddy(t, faultCaddyPort, k8sProxy(map[string]any{"service": "fault-etcd/web:http"}), p.app())
	cd.ExpectBackends(t, 10*time.Second, "a", "b")
	tr := startTraffic(t, cd, []string{"a", "b", "c"}, "")
	time.Sleep(time.Second)

	argv := p.stopComponent(t, "etcd", syscall.SIGTERM)
	stopped := time.Now()
	time.Sleep(3 * time.Second) // traffic while etcd is down
	p.startComponent(t, "etcd", argv)
	if !harness.WaitFor(30*time.Second, etcdReady) {
		t.Fatal("etcd is not healthy 30s after its restart")
	}
	back := time.Now()
	written := setEndpoints(t, p.Client, "fault-etcd", 30*time.Second, a, c)
	t.Logf("fault: etcd restarted: down for %v; the API server accepted the change %v after etcd was back",
		back.Sub(stopped).Round(time.Millisecond), written.Sub(back).Round(time.Millisecond))
	served, ok := tr.firstSeen("", "c", back, faultRecoveryFail)
	checkRecovery(t, "etcd restarted", back, served, ok)
	if ok {
		t.Logf("fault: etcd restarted: change served %v after the API server accepted it", served.Sub(written).Round(time.Millisecond))
	}
	cd.ExpectBackends(t, 30*time.Second, "a", "c")
	checkTraffic(t, tr, "etcd restarted")
	// the API servers are back for the next tests
	if !harness.WaitFor(30*time.Second, func() bool { return p.apiReady(p.Server) }) {
		t.Fatal("the API server is not ready 30s after etcd came back")
	}
}
