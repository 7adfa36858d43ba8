//go:build integration

// Fault tests (issue 10): the registries are killed, restarted, emptied and
// hung under a bounded request loop, and Caddy is reloaded under load. Each
// counts the failed requests to backends that stayed up (every backend
// stays up, so every failed request counts; it must be 0) and the time from
// the registry's recovery (it answers again: the API server's /readyz,
// etcd's /health, the Nacos server's HTTP API) until a change made
// meanwhile is served. That target is 2 s; the tests report the figure on a
// line starting "fault:" (grep for it) and fail only well above it (10 s),
// as CI machines are noisy: a recovery between 2 s and 10 s is a finding to
// read in the figures, not a test failure.
//
// The Kubernetes fault tests use a control plane of their own (faultKube),
// with a second API server on the same etcd: the test's way to change
// EndpointSlices while the API server that Caddy talks to is down or hung.
// A component is stopped and started again with the command line that
// start-kube.sh gave it (read from /proc), so the scripts stay as they are.
// Tests that make nacos-sdk-go clients reconnect skip under -race (see
// TestNacosServerRestart); .ci/run runs them again without it.
package integration

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nacos-group/nacos-sdk-go/v2/common/logger"
	"github.com/nacos-group/nacos-sdk-go/v2/vo"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"

	"github.com/caddy-discovery/caddy-discovery/integration/harness"
)

// Ports of the fault tests' own servers, apart from the shared ones
// (16443/23790, 18848), TestKubernetesMultiCluster's (16444/23800),
// TestNacosServerRestart's (28848) and the demo's, and below the kernel's
// ephemeral ports (harness.CheckPorts); Caddy listens on a port of its own
// too.
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

// ensureRunning starts a component again with its command line if it does
// not run, as after a test that stopped it failed.
func (p *faultPlane) ensureRunning(t testing.TB, name string, argv []string) {
	if pid, err := readPid(p.Dir, name); err == nil && procAlive(pid) {
		return
	}
	if _, err := relaunch(p.Dir, name, argv); err != nil {
		t.Errorf("starting %s again: %v", name, err)
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
// to each host in turn, over keep-alive connections as most clients make
// them, every outcome recorded. Every backend stays up in the fault tests,
// so any request that does not reach one of the allowed backends is a
// failure.
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
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 2}}
	url := fmt.Sprintf("http://127.0.0.1:%d/", c.Port)
	go func() {
		defer close(tr.done)
		defer client.CloseIdleConnections()
		end := time.Now().Add(trafficLimit)
		for i := 0; !tr.stop.Load() && time.Now().Before(end); i++ {
			host := hosts[i%len(hosts)]
			start := time.Now()
			got, err := get(client, url, host)
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

// get sends one request with the Host header host and returns the body (the
// backend's name), or an error for any status but 200.
func get(client *http.Client, url, host string) (string, error) {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	req.Host = host
	resp, err := client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", &statusError{resp.StatusCode, strings.TrimSpace(string(body))}
	}
	return string(body), nil
}

// statusError is an answer with a status other than 200.
type statusError struct {
	code int
	body string
}

func (e *statusError) Error() string { return fmt.Sprintf("status %d: %s", e.code, e.body) }

// Stop ends the loop and waits for it; it is safe to call twice.
func (tr *traffic) Stop() {
	tr.stop.Store(true)
	<-tr.done
}

// outcome stops the loop and counts its requests and the failed ones,
// describing the first failure.
func (tr *traffic) outcome() (total, failed int, first string) {
	tr.Stop()
	all := tr.all()
	failed, first = failures(all)
	return len(all), failed, first
}

// between returns the samples of requests started in [from, to), to the
// given hosts (all if none).
func (tr *traffic) between(from, to time.Time, hosts ...string) []sample {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	var out []sample
	for _, s := range tr.samples {
		if !s.start.Before(from) && s.start.Before(to) && (len(hosts) == 0 || slices.Contains(hosts, s.host)) {
			out = append(out, s)
		}
	}
	return out
}

// all returns the samples of the requests to the given hosts (all if none).
func (tr *traffic) all(hosts ...string) []sample {
	return tr.between(time.Time{}, time.Now().Add(time.Hour), hosts...)
}

// dropped reports whether the request's connection ended without an
// answer, rather than answering wrongly (a status other than 200, or a
// backend not allowed: what an upstream source can cause).
func (s sample) dropped() bool {
	var status *statusError
	return s.err != nil && s.got == "" && !errors.As(s.err, &status) && !strings.HasPrefix(s.err.Error(), "answered by")
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
// request to the given hosts (all if none).
func checkTraffic(t *testing.T, tr *traffic, what string, hosts ...string) {
	t.Helper()
	tr.Stop()
	all := tr.all(hosts...)
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
		t.Errorf("fault: %s: the change made meanwhile was not served within %v of recovery", what, faultServeWait)
		return
	}
	d := served.Sub(recovered)
	t.Logf("fault: %s: change served %v after recovery (target 2s)", what, d.Round(time.Millisecond))
	if d > faultRecoveryFail {
		t.Errorf("%s: the change made meanwhile was served %v after recovery, more than %v", what, d, faultRecoveryFail)
	}
}

// losslessReloads sets net.ipv4.tcp_migrate_req to 1 for the test (and
// back afterwards). Caddy binds a new SO_REUSEPORT listener on every reload
// and closes the old one, and Linux resets the connections still waiting in
// a closed listener's accept queue unless that setting (Linux 5.14+) moves
// them to the new listener: without it, a reload under load fails a few
// connections whatever the upstream source (see TestFaultReloadsUnderLoad).
// The tests that reload under traffic measure the sources, not that.
func losslessReloads(t *testing.T) {
	t.Helper()
	const f = "/proc/sys/net/ipv4/tcp_migrate_req"
	old, err := os.ReadFile(f)
	if err != nil {
		t.Logf("%s: %v: reloads may reset waiting connections", f, err)
		return
	}
	if strings.TrimSpace(string(old)) == "1" {
		return
	}
	if err := os.WriteFile(f, []byte("1"), 0o644); err != nil {
		t.Fatalf("setting %s: %v", f, err)
	}
	t.Cleanup(func() { _ = os.WriteFile(f, old, 0o644) })
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

	logFile := filepath.Join(t.TempDir(), "caddy.log")
	cd := harness.StartCaddyLogged(t, faultCaddyPort, k8sProxy(map[string]any{"service": "fault-kill/web:http"}), p.app(), logFile)
	cd.ExpectBackends(t, 10*time.Second, "a", "b")
	tr := startTraffic(t, cd, []string{"a", "b", "c"}, "")
	time.Sleep(time.Second)

	signalled := time.Now() // Caddy may log the outage before stopComponent has seen the process gone
	argv := p.stopComponent(t, "kube-apiserver", syscall.SIGKILL)
	killed := time.Now()
	// for the next tests, whatever happens
	t.Cleanup(func() { p.ensureRunning(t, "kube-apiserver", argv) })
	setEndpoints(t, p.B, "fault-kill", 10*time.Second, a, c)
	time.Sleep(time.Until(killed.Add(3 * time.Second))) // traffic while it is down
	restart := time.Now()
	p.startComponent(t, "kube-apiserver", argv)
	if !harness.WaitFor(90*time.Second, func() bool { return p.apiReady(p.Server) }) {
		t.Fatal("the API server is not ready 90s after its restart")
	}
	back := time.Now()
	_, logged := logTime(harness.ReadFile(logFile), "watching the API server failed; retrying with backoff", signalled)
	t.Logf("fault: API server killed: down for %v (its start took %v); Caddy logged the outage: %v",
		back.Sub(killed).Round(time.Millisecond), back.Sub(restart).Round(time.Millisecond), logged)
	if !logged {
		t.Errorf("fault: the API server was down for %v and Caddy did not log it (%q)", back.Sub(killed).Round(time.Millisecond),
			"watching the API server failed; retrying with backoff")
	}
	served, ok := tr.firstSeen("", "c", back, faultServeWait)
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
	// for the next tests, whatever happens
	t.Cleanup(func() { p.ensureRunning(t, "etcd", argv) })
	time.Sleep(3 * time.Second) // traffic while etcd is down
	p.startComponent(t, "etcd", argv)
	if !harness.WaitFor(30*time.Second, etcdReady) {
		t.Fatal("etcd is not healthy 30s after its restart")
	}
	back := time.Now()
	written := setEndpoints(t, p.Client, "fault-etcd", 30*time.Second, a, c)
	t.Logf("fault: etcd restarted: down for %v; the API server accepted the change %v after etcd was back",
		back.Sub(stopped).Round(time.Millisecond), written.Sub(back).Round(time.Millisecond))
	served, ok := tr.firstSeen("", "c", back, faultServeWait)
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

var (
	faultPolOnce sync.Once
	faultPol     *polaris
	faultPolErr  error
)

// faultPolaris is the fault tests' own Nacos-protocol server, started on
// first use and stopped after all tests. The tests that kill or hang it
// leave it running and answering.
func faultPolaris(t testing.TB) *polaris {
	t.Helper()
	faultPolOnce.Do(func() {
		dir, err := os.MkdirTemp("", "caddy-discovery-faultpolaris-")
		if err != nil {
			faultPolErr = err
			return
		}
		atExit(func() {
			_ = exec.Command("./stop-polaris.sh", dir).Run()
			_ = os.RemoveAll(dir)
		})
		if faultPolErr = polarisScript("start-polaris.sh", dir, faultNacosPort); faultPolErr != nil {
			return
		}
		faultPol = &polaris{dir: dir, port: faultNacosPort}
	})
	if faultPolErr != nil {
		t.Fatalf("starting the fault tests' polaris: %v", faultPolErr)
	}
	return faultPol
}

// faultNacosApp is the nacos app with the server "default" at the fault
// tests' server, with the default reconcile interval.
func faultNacosApp() string {
	return fmt.Sprintf(`"nacos": {"servers": {"default": {"addresses": ["127.0.0.1:%d"]}}}`, faultNacosPort)
}

// byHost is a subroute handler that sends each host (first of a pair) to its
// handler (second).
func byHost(routes ...[2]string) string {
	var rs []string
	for _, r := range routes {
		rs = append(rs, fmt.Sprintf(`{"match": [{"host": [%q]}], "handle": [%s]}`, r[0], r[1]))
	}
	return fmt.Sprintf(`{"handler": "subroute", "routes": [%s]}`, strings.Join(rs, ", "))
}

// timedLoad reloads Caddy and returns how long the reload took.
func timedLoad(c *harness.Caddy, handler, apps string) time.Duration {
	start := time.Now()
	c.Load(handler, apps)
	return time.Since(start)
}

// registerQuietly registers an instance through its registrar client and
// ignores the outcome: with the server down or hung the call fails, and the
// SDK registers the instance once it has reconnected (it keeps it for redo).
func (r *registrar) registerQuietly(in instance) {
	_, _ = r.client(in.key()).RegisterInstance(vo.RegisterInstanceParam{
		Ip: in.addr.String(), Port: uint64(in.port), Weight: in.weight, Enable: in.enabled, Healthy: in.healthy,
		Metadata: in.metadata, ClusterName: in.cluster, ServiceName: in.service, GroupName: in.group, Ephemeral: true,
	})
}

// deregisterQuietly deregisters an instance and ignores the outcome: the SDK
// forgets it at once (no re-registration after a reconnect), whether or not
// the server got the request.
func (r *registrar) deregisterQuietly(in instance) {
	_, _ = r.client(in.key()).DeregisterInstance(vo.DeregisterInstanceParam{
		Ip: in.addr.String(), Port: uint64(in.port), Cluster: in.cluster, ServiceName: in.service, GroupName: in.group, Ephemeral: true,
	})
}

// hangFor is how long TestFaultServersHung keeps the servers stopped: longer
// than every client timeout on the way, the longest first:
//   - gRPC keepalive of the SDK's connection: a ping after 60 s without
//     reads, dead after 20 s more without its ack (nacos-sdk-go v2.3.5
//     common/remote/rpc/grpc_client.go:139-151): 80 s;
//   - client-go's HTTP/2 health check: a ping after 30 s without reads,
//     dead after 15 s more (apimachinery pkg/util/net/http.go
//     readIdleTimeout/pingTimeout): 45 s; the reflector's watch retries back
//     off from 800 ms to 30 s;
//   - client-go's TLS handshake timeout: 10 s; its dial timeout: 30 s (but
//     a stopped process's port still accepts TCP connections: the kernel
//     completes the handshake into the listen backlog);
//   - the SDK's request timeout (Caddy's `timeout`, default 5 s) and its
//     connection health check, every 5 s with a 3 s timeout
//     (common/constant/const.go KEEP_ALIVE_TIME, DEFAULT_TIMEOUT_MILLS);
//   - ours: the nacos client's health check every 2 s, closeTimeout 5 s; the Kubernetes informers have none of their own (no
//     rest.Config.Timeout: watches are long requests).
const hangFor = 85 * time.Second

// TestFaultServersHung: the API server that Caddy watches through and the
// Nacos server are stopped with SIGSTOP together for hangFor, under
// traffic, then continued. A hung server accepts connections and answers
// nothing, which no timeout short of the longest ends. Requests keep
// succeeding at normal latency (p99 before and during the hang are
// compared; the test fails above 1 s, where a request would have waited on
// a hung server's timeout), reloads during the hang, which add and drop a
// subscription of either source, take about as long as before it (the test
// fails 2 s above the slowest before: a reload that waited on one of the
// 3 s or 5 s request timeouts: a subscription that is dropped leaves in the
// background, and its successor waits for that, not the reload), and
// changes made during the hang (through the second API server; a Nacos
// deregistration and a registration, which the SDK carries out after
// reconnecting) are served soon after each server answers again.
//
// After the hang the instances' own SDK clients reconnect too, and the
// server drops each instance with its old connection until the SDK
// registers it again: the Nacos site that the test judges has
// protect_threshold 0.5, and one without it is measured for comparison.
//
// The Nacos figure is mostly not Caddy's, and the test logs its timeline
// (from the SDK clients' logs, Caddy's and the server's; set
// FAULT_TIMELINE_FILE to a path for every line): the registration reaches
// the server only once c's own SDK client has reconnected, and every SDK
// client is then in its reconnect backoff (after ~19 server checks that
// each timed out after 3 s, 1.9 s between attempts: ~1.3 s after SIGCONT
// in one run); Polaris pushes a registration after its 1 s cache refresh
// and its 1 s Nacos sync (~1.1 s); Caddy serves the pushed list within
// milliseconds.
func TestFaultServersHung(t *testing.T) {
	if raceEnabled {
		t.Skip("nacos-sdk-go v2.3.5 has a known data race on reconnect (#741, #905); run without -race (.ci/run does)")
	}
	p := faultKube(t)
	pol := faultPolaris(t)
	n := harness.NewNetns(t)
	a, b, c := n.AddAddr(t), n.AddAddr(t), n.AddAddr(t)
	n.Backend(t, "a", a, 8080)
	n.Backend(t, "b", b, 8080)
	n.Backend(t, "c", c, 8080)
	p.manualService(t, "fault-hang", a, b)
	sdk := recordSDKLines(t) // before the registrars' clients exist, so that their start is recorded too
	reg := newRegistrar(t, pol, "")
	ia, ib, ic := up("DEFAULT_GROUP", "hang", a, 8080), up("DEFAULT_GROUP", "hang", b, 8080), up("DEFAULT_GROUP", "hang", c, 8080)
	reg.put(ia)
	reg.put(ib)
	reg.client(ic.key())

	routes := [][2]string{
		{"k8s.test", k8sProxy(map[string]any{"service": "fault-hang/web:http"})},
		{"nacos.test", nacosProxy(map[string]any{"service": "hang", "protect_threshold": 0.5})},
		{"nacos-raw.test", nacosProxy(map[string]any{"service": "hang"})}, // for comparison
	}
	base := byHost(routes...)
	// plus a subscription of one source that base does not have: going
	// from base to one of them adds it, going back drops it
	extra := map[string]string{
		"k8s": byHost(append(slices.Clone(routes),
			[2]string{"k8s-extra.test", k8sProxy(map[string]any{"service": "fault-hang-extra/web:http"})})...),
		"nacos": byHost(append(slices.Clone(routes),
			[2]string{"nacos-extra.test", nacosProxy(map[string]any{"service": "hang-extra"})})...),
	}
	apps := p.app() + ", " + faultNacosApp()
	losslessReloads(t)
	logFile := filepath.Join(t.TempDir(), "caddy.log")
	cd := harness.StartCaddyLogged(t, faultCaddyPort, base, apps, logFile)
	expectServed(t, cd, "k8s.test", 10*time.Second, "a", "b")
	expectServed(t, cd, "nacos.test", 10*time.Second, "a", "b")
	sdk.install() // again, in front of Caddy's SDK logger

	type reload struct {
		at    time.Duration // since the hang began; negative: before it
		start time.Time
		d     time.Duration
		what  string
	}
	var reloads []reload
	reloadPair := func(at time.Duration) {
		for _, src := range []string{"k8s", "nacos"} {
			start := time.Now()
			reloads = append(reloads, reload{at, start, timedLoad(cd, extra[src], apps), "add a " + src + " subscription"})
			start = time.Now()
			reloads = append(reloads, reload{at, start, timedLoad(cd, base, apps), "drop a " + src + " subscription"})
		}
	}
	for range 3 {
		reloadPair(-1)
		time.Sleep(500 * time.Millisecond) // the added subscriptions start
	}

	tr := startTraffic(t, cd, []string{"a", "b", "c"}, "k8s.test", "nacos.test", "nacos-raw.test")
	time.Sleep(3 * time.Second) // latency before the hang

	// Whatever happens, the servers go on: before the registrars close
	// their clients and the namespace is deleted (cleanups run last first).
	t.Cleanup(func() {
		for _, f := range [][2]string{{p.Dir, "kube-apiserver"}, {pol.dir, "polaris"}} {
			if pid, err := readPid(f[0], f[1]); err == nil {
				_ = syscall.Kill(pid, syscall.SIGCONT)
			}
		}
	})
	hung := time.Now()
	p.signal(t, "kube-apiserver", syscall.SIGSTOP)
	if err := syscall.Kill(mustPid(t, pol.dir, "polaris"), syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	// changes made during the hang
	setEndpoints(t, p.B, "fault-hang", 10*time.Second, a, c)
	var changes sync.WaitGroup
	changes.Go(func() {
		reg.deregisterQuietly(ib)
		reg.registerQuietly(ic)
	})
	for _, at := range []time.Duration{2 * time.Second, 25 * time.Second, 50 * time.Second, hangFor - 3*time.Second} {
		time.Sleep(time.Until(hung.Add(at)))
		reloadPair(time.Since(hung))
	}
	time.Sleep(time.Until(hung.Add(hangFor)))
	resumed := time.Now()
	p.signal(t, "kube-apiserver", syscall.SIGCONT)
	if err := syscall.Kill(mustPid(t, pol.dir, "polaris"), syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	// when A's watch cache, which Caddy's list and watch read, has the
	// change: a delay there is the API server's own
	cached := make(chan time.Time, 1)
	go func() {
		defer close(cached)
		for deadline := time.Now().Add(faultServeWait); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			list, err := p.Client.DiscoveryV1().EndpointSlices("fault-hang").List(context.Background(), metav1.ListOptions{ResourceVersion: "0"})
			if err == nil && len(list.Items) == 1 && slices.ContainsFunc(list.Items[0].Endpoints, func(e discoveryv1.Endpoint) bool {
				return slices.Contains(e.Addresses, c.String())
			}) {
				cached <- time.Now()
				return
			}
		}
	}()
	// when the Nacos server lists the registration that the SDK of c's
	// registrar redoes once it has reconnected
	listed := make(chan time.Time, 1)
	go func() {
		defer close(listed)
		if at, ok := serverListsAt(pol, "hang", c.String(), faultServeWait); ok {
			listed <- at
		}
	}()
	// recovery: when each server answers again, each polled on its own: the
	// API server takes a few hundred milliseconds to answer after SIGCONT,
	// and polling the two in turn dated the Nacos server's recovery that
	// much late
	answers := func(ready func() bool) <-chan time.Time {
		at := make(chan time.Time, 1)
		go func() {
			defer close(at)
			for deadline := resumed.Add(faultServeWait); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
				if ready() {
					at <- time.Now()
					return
				}
			}
		}()
		return at
	}
	apiCh, nacosCh := answers(func() bool { return p.apiReady(p.Server) }), answers(func() bool { return nacosReady(pol) })
	apiBack, nacosBack := <-apiCh, <-nacosCh
	if apiBack.IsZero() || nacosBack.IsZero() {
		t.Fatalf("%v after SIGCONT, the API server answers: %v; the Nacos server answers: %v", faultServeWait, !apiBack.IsZero(), !nacosBack.IsZero())
	}
	t.Logf("fault: servers hung: after SIGCONT, the API server answered /readyz after %v, the Nacos server its HTTP API after %v",
		apiBack.Sub(resumed).Round(time.Millisecond), nacosBack.Sub(resumed).Round(time.Millisecond))
	changes.Wait()

	k8sServed, k8sOK := tr.firstSeen("k8s.test", "c", resumed, faultServeWait)
	nacosServed, nacosOK := tr.firstSeen("nacos.test", "c", resumed, faultServeWait)
	checkRecovery(t, "API server hung", apiBack, k8sServed, k8sOK)
	checkRecovery(t, "Nacos server hung", nacosBack, nacosServed, nacosOK)
	if nacosOK {
		marks := []timedLine{{resumed, "test: SIGCONT"}, {nacosBack, "test: the Nacos server answers its HTTP API (recovery)"},
			{nacosServed, "test: first request to nacos.test answered by c"}}
		if at, ok := <-listed; ok {
			marks = append(marks, timedLine{at, "test: the server's HTTP API lists c"})
		}
		// who took how long: c's own SDK client (in the test process, like
		// Caddy's) logs its registration, Caddy's the list it receives
		ip := fmt.Sprintf(`"ip":%q`, c.String())
		registered, okReg := sdk.first(resumed, "register instance", ip)
		received, okRecv := sdk.first(resumed, "was updated to", ip)
		if okReg && okRecv {
			t.Logf("fault: servers hung: of that, c's own SDK client registered it again %v after recovery (its reconnect backoff), "+
				"the list with c reached Caddy's SDK client %v after that (the server: Polaris's 1 s cache refresh, then its 1 s Nacos sync and push), "+
				"and Caddy served c %v after that (the next request of the test)",
				registered.Sub(nacosBack).Round(time.Millisecond), received.Sub(registered).Round(time.Millisecond), nacosServed.Sub(received).Round(time.Millisecond))
		}
		logNacosTimeline(t, sdk, pol, harness.ReadFile(logFile), resumed, nacosServed, marks...)
	}
	if at, ok := logTime(harness.ReadFile(logFile), "watching the API server works again", resumed); ok {
		t.Logf("fault: servers hung: Caddy's watch of the namespace started again %v after the API server answered", at.Sub(apiBack).Round(time.Millisecond))
	}
	if at, ok := <-cached; ok {
		t.Logf("fault: servers hung: the API server's watch cache had the change %v after it answered", at.Sub(apiBack).Round(time.Millisecond))
	}
	expectServed(t, cd, "k8s.test", 30*time.Second, "a", "c")
	expectServed(t, cd, "nacos.test", 30*time.Second, "a", "c")
	tr.Stop()

	before := tr.between(hung.Add(-3*time.Second), hung, "k8s.test", "nacos.test")
	during := tr.between(hung, resumed, "k8s.test", "nacos.test")
	p99b, p99d := percentile(before, 0.99), percentile(during, 0.99)
	t.Logf("fault: servers hung %v: request latency p50/p99/max before %v/%v/%v (%d requests), during %v/%v/%v (%d requests)", hangFor,
		percentile(before, 0.5), p99b, percentile(before, 1), len(before), percentile(during, 0.5), p99d, percentile(during, 1), len(during))
	var usual, worst time.Duration
	for _, r := range reloads {
		if r.at < 0 {
			usual = max(usual, r.d)
		} else {
			worst = max(worst, r.d)
		}
		t.Logf("fault: servers hung: reload (%s) at %v: %v", r.what, r.at.Round(time.Second), r.d.Round(time.Millisecond))
	}
	t.Logf("fault: servers hung: slowest reload before the hang %v, during it %v", usual.Round(time.Millisecond), worst.Round(time.Millisecond))
	raw, _ := failures(tr.all("nacos-raw.test"))
	t.Logf("fault: servers hung: without protect_threshold, %d of %d requests failed (the instances' clients reconnect after the hang, and the server drops their instances until they register again)",
		raw, len(tr.all("nacos-raw.test")))
	// A connection that Caddy ends without an answer as a reload shuts the
	// old server down is Caddy's (see TestFaultReloadsUnderLoad); any
	// other failure counts.
	var judged []sample
	excused := 0
	for _, s := range tr.all("k8s.test", "nacos.test") {
		if s.dropped() && slices.ContainsFunc(reloads, func(r reload) bool {
			return !s.start.Before(r.start.Add(-time.Second)) && s.start.Before(r.start.Add(r.d+time.Second))
		}) {
			excused++
			continue
		}
		judged = append(judged, s)
	}
	nf, first := failures(judged)
	t.Logf("fault: servers hung: %d requests, %d failed, %d connections ended without an answer within 1s of a reload (Caddy's graceful shutdown)",
		len(judged)+excused, nf, excused)
	if nf > 0 {
		t.Errorf("servers hung: %d of %d requests to backends that stayed up failed; first: %s", nf, len(judged)+excused, first)
	}
	if p99d > time.Second {
		t.Errorf("request latency p99 during the hang is %v (before: %v): a request waited on a hung server", p99d, p99b)
	}
	if worst > usual+2*time.Second {
		t.Errorf("a reload during the hang took %v, the slowest before it %v: a reload waited on a hung server", worst, usual)
	}
}

// sdkLines records the log lines of every nacos-sdk-go client in the test
// process, Caddy's and the registrars', with their times, for the
// timeline of TestFaultServersHung. The SDK logger is process-global: the
// recorder wraps whatever logger is current and passes every line on to
// it (unless that is the SDK's own default, which prints to stderr).
// Caddy's first client sets its own logger once per process
// (nacos/sdklog.go), replacing the recorder, so install is called again
// after that.
type sdkLines struct {
	mu    sync.Mutex
	next  logger.Logger
	lines []timedLine
	done  bool
}

// timedLine is one line of a timeline.
type timedLine struct {
	at   time.Time
	what string
}

// sdkLinesMax bounds the recording: the hang alone logs a few thousand.
const sdkLinesMax = 200000

func recordSDKLines(t *testing.T) *sdkLines {
	r := &sdkLines{}
	r.install()
	t.Cleanup(func() {
		r.mu.Lock()
		r.done = true
		next := r.next
		r.mu.Unlock()
		if next != nil && logger.GetLogger() == logger.Logger(r) {
			logger.SetLogger(next)
		}
	})
	return r
}

// install puts the recorder in front of the current SDK logger, unless it
// is there already.
func (r *sdkLines) install() {
	cur := logger.GetLogger()
	if cur == logger.Logger(r) {
		return
	}
	r.mu.Lock()
	r.next = nil
	if _, sdkDefault := cur.(*logger.NacosLogger); !sdkDefault {
		r.next = cur
	}
	r.mu.Unlock()
	logger.SetLogger(r)
}

func (r *sdkLines) add(level, msg string) logger.Logger {
	now := time.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.done && len(r.lines) < sdkLinesMax {
		r.lines = append(r.lines, timedLine{now, "sdk " + level + ": " + msg})
	}
	return r.next
}

func (r *sdkLines) Info(a ...any) {
	if n := r.add("info", fmt.Sprint(a...)); n != nil {
		n.Info(a...)
	}
}

func (r *sdkLines) Warn(a ...any) {
	if n := r.add("warn", fmt.Sprint(a...)); n != nil {
		n.Warn(a...)
	}
}

func (r *sdkLines) Error(a ...any) {
	if n := r.add("error", fmt.Sprint(a...)); n != nil {
		n.Error(a...)
	}
}

func (r *sdkLines) Debug(a ...any) {
	if n := r.add("debug", fmt.Sprint(a...)); n != nil {
		n.Debug(a...)
	}
}

func (r *sdkLines) Infof(f string, a ...any) {
	if n := r.add("info", fmt.Sprintf(f, a...)); n != nil {
		n.Infof(f, a...)
	}
}

func (r *sdkLines) Warnf(f string, a ...any) {
	if n := r.add("warn", fmt.Sprintf(f, a...)); n != nil {
		n.Warnf(f, a...)
	}
}

func (r *sdkLines) Errorf(f string, a ...any) {
	if n := r.add("error", fmt.Sprintf(f, a...)); n != nil {
		n.Errorf(f, a...)
	}
}

func (r *sdkLines) Debugf(f string, a ...any) {
	if n := r.add("debug", fmt.Sprintf(f, a...)); n != nil {
		n.Debugf(f, a...)
	}
}

func (*sdkLines) Close() error { return nil }

// between returns the recorded lines from from to to.
func (r *sdkLines) between(from, to time.Time) []timedLine {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []timedLine
	for _, l := range r.lines {
		if !l.at.Before(from) && !l.at.After(to) {
			out = append(out, l)
		}
	}
	return out
}

// first returns the time of the first line recorded after since that
// contains every one of parts.
func (r *sdkLines) first(since time.Time, parts ...string) (time.Time, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, l := range r.lines {
		if l.at.After(since) && !slices.ContainsFunc(parts, func(p string) bool { return !strings.Contains(l.what, p) }) {
			return l.at, true
		}
	}
	return time.Time{}, false
}

// polarisLines returns the lines of the Polaris server's Nacos API log
// (start-polaris.sh: log/runtime/nacos-apiserver.log, info level) from from
// to to. Its times are local, with microseconds.
func polarisLines(p *polaris, from, to time.Time) []timedLine {
	var out []timedLine
	for line := range strings.SplitSeq(harness.ReadFile(filepath.Join(p.dir, "log", "runtime", "nacos-apiserver.log")), "\n") {
		if len(line) < 26 {
			continue
		}
		at, err := time.ParseInLocation("2006-01-02T15:04:05.000000", line[:26], time.Local)
		if err != nil || at.Before(from) || at.After(to) {
			continue
		}
		out = append(out, timedLine{at, "polaris: " + strings.TrimSpace(strings.TrimPrefix(line[26:], "Z"))})
	}
	return out
}

// caddyLines returns the entries of Caddy's JSON log from from to to, as
// "caddy <logger>: <msg> <other fields>".
func caddyLines(log string, from, to time.Time) []timedLine {
	var out []timedLine
	for line := range strings.SplitSeq(log, "\n") {
		var entry map[string]any
		if json.Unmarshal([]byte(line), &entry) != nil {
			continue
		}
		ts, _ := entry["ts"].(float64)
		at := time.Unix(0, int64(ts*1e9))
		if at.Before(from) || at.After(to) {
			continue
		}
		name, _ := entry["logger"].(string)
		msg, _ := entry["msg"].(string)
		for _, k := range []string{"ts", "level", "logger", "msg"} {
			delete(entry, k)
		}
		rest, _ := json.Marshal(entry)
		out = append(out, timedLine{at, fmt.Sprintf("caddy %s: %s %s", name, msg, rest)})
	}
	return out
}

// serverListsAt polls the Nacos server's HTTP API for the instances of
// service in DEFAULT_GROUP until it lists ip (healthy), and returns when it
// first did; false after timeout. Its answer comes from the same cache as
// the subscriptions' answers and pushes.
func serverListsAt(p *polaris, service, ip string, timeout time.Duration) (time.Time, bool) {
	url := fmt.Sprintf("http://127.0.0.1:%d/nacos/v1/ns/instance/list?serviceName=%s&healthyOnly=true", p.port, service)
	client := &http.Client{Timeout: 2 * time.Second}
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		resp, err := client.Get(url)
		if err != nil {
			continue
		}
		var list struct {
			Hosts []struct {
				IP      string `json:"ip"`
				Healthy bool   `json:"healthy"`
			} `json:"hosts"`
		}
		err = json.NewDecoder(resp.Body).Decode(&list)
		resp.Body.Close()
		listed := false
		for _, h := range list.Hosts {
			listed = listed || h.IP == ip && h.Healthy
		}
		if err == nil && listed {
			return time.Now(), true
		}
	}
	return time.Time{}, false
}

// timelineKeys select the lines of the compact Nacos recovery timeline:
// connections made, registrations and subscriptions redone, lists received
// and pushed; not the retries of the hang.
var timelineKeys = []string{
	"success to connect", "notify connected event", "notify disconnected event", "abandon prev connection",
	"server check success", "register instance", "Subscribe Service", "Unsubscribe Service", "was updated to",
	"naming push response", "notify subscriber data", "service reversion update", "out dated connection",
	"caddy nacos", "service has backends", "service has no usable backends",
}

// logNacosTimeline logs, relative to SIGCONT, what happened from it until
// the change was served: the SDK clients' lines (Caddy's and the
// registrars'), the server's and Caddy's. With FAULT_TIMELINE_FILE set,
// every line from 5 s before SIGCONT to 3 s after the change was served
// is written to that file as well.
func logNacosTimeline(t *testing.T, sdk *sdkLines, p *polaris, caddyLog string, resumed, served time.Time, marks ...timedLine) {
	t.Helper()
	from, to := resumed.Add(-5*time.Second), served.Add(3*time.Second)
	all := append(append(append(sdk.between(from, to), polarisLines(p, from, to)...), caddyLines(caddyLog, from, to)...), marks...)
	slices.SortStableFunc(all, func(a, b timedLine) int { return a.at.Compare(b.at) })
	if f := os.Getenv("FAULT_TIMELINE_FILE"); f != "" {
		var b strings.Builder
		for _, l := range all {
			fmt.Fprintf(&b, "%+8.3fs %s\n", l.at.Sub(resumed).Seconds(), l.what)
		}
		if err := os.WriteFile(f, []byte(b.String()), 0o644); err != nil {
			t.Logf("writing the timeline: %v", err)
		}
	}
	var b strings.Builder
	n := 0
	for _, l := range all {
		if l.at.Before(resumed.Add(-time.Second)) || l.at.After(served.Add(500*time.Millisecond)) ||
			!slices.ContainsFunc(timelineKeys, func(k string) bool { return strings.Contains(l.what, k) }) && !strings.HasPrefix(l.what, "test:") {
			continue
		}
		if n++; n > 80 {
			b.WriteString("\n  (more left out)")
			break
		}
		what := l.what
		if len(what) > 260 {
			what = what[:260] + "…"
		}
		fmt.Fprintf(&b, "\n  %+7.3fs %s", l.at.Sub(resumed).Seconds(), what)
	}
	t.Logf("fault: servers hung: Nacos timeline from SIGCONT:%s", b.String())
}

// logTime is the time of the first line of a Caddy JSON log with the
// message msg logged after since.
func logTime(log, msg string, since time.Time) (time.Time, bool) {
	for line := range strings.SplitSeq(log, "\n") {
		var entry struct {
			TS  float64 `json:"ts"`
			Msg string  `json:"msg"`
		}
		if json.Unmarshal([]byte(line), &entry) != nil || entry.Msg != msg {
			continue
		}
		if at := time.Unix(0, int64(entry.TS*1e9)); at.After(since) {
			return at, true
		}
	}
	return time.Time{}, false
}

// nacosReady reports whether the Nacos server answers its HTTP API.
func nacosReady(p *polaris) bool {
	resp, err := (&http.Client{Timeout: 2 * time.Second}).Get(fmt.Sprintf("http://127.0.0.1:%d/nacos/v1/ns/service/list?pageNo=1&pageSize=1", p.port))
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// faultServeWait bounds the wait for a change to be served after recovery;
// the test fails above faultRecoveryFail, but reports the figure up to this.
const faultServeWait = 60 * time.Second

func mustPid(t testing.TB, dir, name string) int {
	t.Helper()
	pid, err := readPid(dir, name)
	if err != nil {
		t.Fatal(err)
	}
	return pid
}

// TestFaultNacosRestartedEmpty: the Nacos server is killed (SIGKILL) under
// traffic, its store is deleted, and while it is down one instance goes
// away and another comes (the SDK keeps a registration made meanwhile and
// carries it out after reconnecting). It starts again empty, as a server
// that keeps its instances in memory does, and fills up again as the
// instances' clients reconnect and register. A source with
// protect_threshold keeps the last known instances meanwhile: no request to
// it fails. A source without it, on the same service, is measured for
// comparison: it follows the server's empty list.
func TestFaultNacosRestartedEmpty(t *testing.T) {
	if raceEnabled {
		t.Skip("nacos-sdk-go v2.3.5 has a known data race on reconnect (#741, #905); run without -race (.ci/run does)")
	}
	pol := faultPolaris(t)
	n := harness.NewNetns(t)
	a, b, c := n.AddAddr(t), n.AddAddr(t), n.AddAddr(t)
	n.Backend(t, "a", a, 8080)
	n.Backend(t, "b", b, 8080)
	n.Backend(t, "c", c, 8080)
	reg := newRegistrar(t, pol, "")
	ia, ib, ic := up("DEFAULT_GROUP", "empty", a, 8080), up("DEFAULT_GROUP", "empty", b, 8080), up("DEFAULT_GROUP", "empty", c, 8080)
	reg.put(ia)
	reg.put(ib)
	reg.client(ic.key())

	h := byHost(
		[2]string{"nacos.test", nacosProxy(map[string]any{"service": "empty", "protect_threshold": 0.5})},
		[2]string{"nacos-raw.test", nacosProxy(map[string]any{"service": "empty"})})
	cd := harness.StartCaddy(t, faultCaddyPort, h, faultNacosApp())
	expectServed(t, cd, "nacos.test", 10*time.Second, "a", "b")
	expectServed(t, cd, "nacos-raw.test", 10*time.Second, "a", "b")
	tr := startTraffic(t, cd, []string{"a", "b", "c"}, "nacos.test", "nacos-raw.test")
	time.Sleep(time.Second)

	t.Cleanup(func() { pol.start(t) }) // for the next tests, whatever happens
	pol.kill(t)
	killed := time.Now()
	if err := os.Remove(filepath.Join(pol.dir, "polaris.bolt")); err != nil {
		t.Fatalf("deleting the server's store: %v", err)
	}
	reg.deregisterQuietly(ib)
	reg.registerQuietly(ic)
	time.Sleep(time.Until(killed.Add(3 * time.Second))) // traffic while it is down
	pol.start(t)
	back := time.Now()
	t.Logf("fault: Nacos server restarted empty: down for %v", back.Sub(killed).Round(time.Millisecond))

	served, ok := tr.firstSeen("nacos.test", "c", back, faultServeWait)
	checkRecovery(t, "Nacos server restarted empty", back, served, ok)
	expectServed(t, cd, "nacos.test", 30*time.Second, "a", "c")
	tr.Stop()
	raw, first := failures(tr.all("nacos-raw.test"))
	t.Logf("fault: Nacos server restarted empty: without protect_threshold, %d of %d requests failed (first: %s)", raw, len(tr.all("nacos-raw.test")), first)
	checkTraffic(t, tr, "Nacos server restarted empty (protect_threshold 0.5)", "nacos.test")
}

// load is a concurrent bounded request loop: workers send requests as fast
// as they can, each over its own keep-alive connections, to each host in
// turn. It counts apart the requests that got a wrong answer (a status
// other than 200, or a backend not allowed: what an upstream source can
// cause) and those whose connection ended without an answer.
type load struct {
	stop                  atomic.Bool
	done                  sync.WaitGroup
	sent, failed, dropped atomic.Int64
	firstFailed           atomic.Value
	firstDropped          atomic.Value
}

func startLoad(t *testing.T, port, workers int, allowed []string, hosts ...string) *load {
	l := &load{}
	url := fmt.Sprintf("http://127.0.0.1:%d/", port)
	end := time.Now().Add(trafficLimit)
	for w := range workers {
		l.done.Go(func() {
			client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
			defer client.CloseIdleConnections()
			for i := w; !l.stop.Load() && time.Now().Before(end); i++ {
				got, err := get(client, url, hosts[i%len(hosts)])
				l.sent.Add(1)
				var status *statusError
				switch {
				case err == nil && !slices.Contains(allowed, got):
					l.failed.Add(1)
					l.firstFailed.CompareAndSwap(nil, fmt.Sprintf("answered by %q, not one of the backends %v", got, allowed))
				case errors.As(err, &status):
					l.failed.Add(1)
					l.firstFailed.CompareAndSwap(nil, err.Error())
				case err != nil:
					l.dropped.Add(1)
					l.firstDropped.CompareAndSwap(nil, err.Error())
				}
			}
		})
	}
	t.Cleanup(l.Stop)
	return l
}

// Stop ends the loop and waits for it; it is safe to call twice.
func (l *load) Stop() {
	l.stop.Store(true)
	l.done.Wait()
}

// wrkRun is wrk running against Caddy until stopped with SIGINT.
type wrkRun struct {
	cmd *exec.Cmd
	out harness.Output
}

// startWrk runs wrk with one thread and conns connections, alternating the
// Host header between hosts, for at most trafficLimit; nil without wrk.
func startWrk(t *testing.T, port, conns int, hosts ...string) *wrkRun {
	bin, err := exec.LookPath("wrk")
	if err != nil {
		return nil
	}
	var lua strings.Builder
	lua.WriteString("local hosts = {")
	for _, h := range hosts {
		fmt.Fprintf(&lua, "%q, ", h)
	}
	lua.WriteString("}\nlocal i = 0\nrequest = function()\n\ti = i + 1\n\twrk.headers[\"Host\"] = hosts[i % #hosts + 1]\n\treturn wrk.format()\nend\n")
	script := filepath.Join(t.TempDir(), "hosts.lua")
	if err := os.WriteFile(script, []byte(lua.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	w := &wrkRun{}
	w.cmd = exec.Command(bin, "-t1", fmt.Sprintf("-c%d", conns), fmt.Sprintf("-d%ds", int(trafficLimit.Seconds())),
		"--latency", "-s", script, fmt.Sprintf("http://127.0.0.1:%d/", port))
	w.cmd.Stdout, w.cmd.Stderr = &w.out, &w.out
	if err := w.cmd.Start(); err != nil {
		t.Fatalf("starting wrk: %v", err)
	}
	t.Cleanup(func() { _ = w.cmd.Process.Kill(); _ = w.cmd.Wait() })
	return w
}

// stop ends wrk with SIGINT, after which it prints its figures, and returns
// them: requests, non-2xx responses and socket errors by kind (connect,
// read, write, timeout).
func (w *wrkRun) stop(t *testing.T) (requests, non2xx int, socketErrs map[string]int, out string) {
	t.Helper()
	_ = w.cmd.Process.Signal(os.Interrupt)
	done := make(chan error, 1)
	go func() { done <- w.cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = w.cmd.Process.Kill()
		t.Fatalf("wrk did not exit within 10s of SIGINT; output:\n%s", w.out.String())
	}
	out = w.out.String()
	socketErrs = map[string]int{}
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) > 2 && f[1] == "requests" && f[2] == "in":
			requests, _ = strconv.Atoi(f[0])
		case strings.HasPrefix(strings.TrimSpace(line), "Non-2xx or 3xx responses:"):
			non2xx, _ = strconv.Atoi(f[len(f)-1])
		case strings.HasPrefix(strings.TrimSpace(line), "Socket errors:"):
			// Socket errors: connect 0, read 0, write 0, timeout 0
			for i := 2; i+1 < len(f); i += 2 {
				n, _ := strconv.Atoi(strings.TrimSuffix(f[i+1], ","))
				socketErrs[f[i]] = n
			}
		}
	}
	if requests == 0 {
		t.Fatalf("no request count in wrk's output:\n%s", out)
	}
	return requests, non2xx, socketErrs, out
}

// openSockets counts this process's open sockets (connections, listeners).
func openSockets(t *testing.T) int {
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range entries {
		if l, err := os.Readlink(filepath.Join("/proc/self/fd", e.Name())); err == nil && strings.HasPrefix(l, "socket:") {
			n++
		}
	}
	return n
}

// watchCounts reads the API server's open namespaced WATCH requests on
// EndpointSlices and on Services from one /metrics scrape.
func (p *faultPlane) watchCounts() (endpointSlices, services float64, err error) {
	body, err := p.Client.CoreV1().RESTClient().Get().AbsPath("/metrics").DoRaw(context.Background())
	if err != nil {
		return 0, 0, err
	}
	for line := range strings.SplitSeq(string(body), "\n") {
		if !strings.HasPrefix(line, "apiserver_longrunning_requests{") ||
			!strings.Contains(line, `scope="namespace"`) || !strings.Contains(line, `verb="WATCH"`) {
			continue
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err != nil {
			continue
		}
		switch {
		case strings.Contains(line, `resource="endpointslices"`):
			endpointSlices += v
		case strings.Contains(line, `resource="services"`):
			services += v
		}
	}
	return endpointSlices, services, nil
}

// withIdleTimeout gives a reverse_proxy handler an HTTP transport whose idle
// upstream connections close after d.
func withIdleTimeout(handler string, d time.Duration) string {
	var h map[string]any
	if err := json.Unmarshal([]byte(handler), &h); err != nil {
		panic(err)
	}
	h["transport"] = map[string]any{"protocol": "http", "keep_alive": map[string]any{"idle_timeout": d.String()}}
	b, _ := json.Marshal(h)
	return string(b)
}

// TestFaultReloadsUnderLoad: 100 reloads under load, each changing how both
// sources name their service (the same Service and Nacos service), with
// wrk (if installed; .ci/run installs it) and a concurrent request loop
// over keep-alive connections. Throughout, the API server has one
// EndpointSlice watch and one Service watch for the namespace and the Nacos
// server one connection from Caddy (sampled all along by a second
// goroutine, and the connection after every reload); and the goroutines
// and open sockets of the process are the same before and after, each
// counted with no load, after a reload, once they have settled.
//
// What the test leaves to Caddy, as it happens with static upstreams alike
// (measured with the same load and 300 reloads under -race, no source at
// all: 332 wrk read errors, 2 connections of the request loop ended by EOF):
//   - connections that end without an answer, about one per reload for
//     wrk: Caddy's graceful shutdown of the old server closes keep-alive
//     connections that were idle on its side while the client had already
//     sent the next request on them (clients may retry such a request, RFC
//     9112 §9.3.1; Go's client does when the connection was reused, wrk
//     never does), and rarely a new connection. An upstream source cannot
//     end a connection: its failures are 502/503 answers, or a panic, which
//     net/http would log through Caddy. So the test fails on any wrong
//     answer (wrk's non-2xx, the request loop's status or backend), on
//     wrk's connect errors and timeouts and on a panic in Caddy's log; the
//     connections that ended without an answer are reported;
//   - the old handlers' upstream connections that requests in flight during
//     a reload hand back to a transport already cleaned up: they stay idle
//     until its idle_timeout, 2 minutes by default (about 15 per reload
//     here, 3 goroutines and 2 sockets each with in-process backends). The
//     handlers here set 1 s, so that "after" is counted once they are gone.
func TestFaultReloadsUnderLoad(t *testing.T) {
	if raceEnabled {
		// Every reload re-subscribes while the server pushes: nacos-sdk-go
		// v2.3.5 sorts its cached instance slice in place on the push
		// goroutine (naming_cache/service_info_holder.go:172, :190) while a
		// Subscribe hands the same slice to our callback on another, and
		// -race reports the SDK's race in our slices.Clone of it.
		t.Skip("nacos-sdk-go v2.3.5 sorts the instance slice it hands to callbacks in place, racing with Subscribe; run without -race (.ci/run does)")
	}
	p := faultKube(t)
	pol := faultPolaris(t)
	n := harness.NewNetns(t)
	a, b := n.AddAddr(t), n.AddAddr(t)
	n.Backend(t, "a", a, 8080)
	n.Backend(t, "b", b, 8080)
	p.manualService(t, "fault-reload", a, b)
	reg := newRegistrar(t, pol, "")
	reg.put(up("DEFAULT_GROUP", "reloads", a, 8080))
	reg.put(up("DEFAULT_GROUP", "reloads", b, 8080))

	const idle = time.Second
	handler := func(i int) string {
		k8s, nacos := "fault-reload/web:http", "reloads"
		if i%2 == 1 {
			k8s, nacos = "web.fault-reload.svc.cluster.local:http", "DEFAULT_GROUP@@reloads"
		}
		return byHost([2]string{"k8s.test", withIdleTimeout(k8sProxy(map[string]any{"service": k8s}), idle)},
			[2]string{"nacos.test", withIdleTimeout(nacosProxy(map[string]any{"service": nacos}), idle)})
	}
	apps := p.app() + ", " + faultNacosApp()
	grpc := faultNacosPort + 1000
	time.Sleep(200 * time.Millisecond)
	nacosBase := grpcConns(t, grpc) // the registrars'
	losslessReloads(t)

	logFile := filepath.Join(t.TempDir(), "caddy.log")
	cd := harness.StartCaddyLogged(t, faultCaddyPort, handler(0), apps, logFile)
	expectServed(t, cd, "k8s.test", 10*time.Second, "a", "b")
	expectServed(t, cd, "nacos.test", 10*time.Second, "a", "b")
	harness.Eventually(t, 10*time.Second, func() error {
		es, svc, err := p.watchCounts()
		if err == nil && (es != 1 || svc != 1) {
			err = fmt.Errorf("%v EndpointSlice and %v Service watches, want 1 each", es, svc)
		}
		return err
	})
	if got := grpcConns(t, grpc) - nacosBase; got != 1 {
		t.Fatalf("%d gRPC connections from Caddy to the Nacos server, want 1", got)
	}

	// settled reloads Caddy, waits out the upstream idle timeout, then
	// until the goroutines and sockets have stayed the same for a second
	// (at most 10 s), and returns them.
	settled := func() (goroutines, sockets int) {
		cd.Load(handler(0), apps)
		time.Sleep(idle + 500*time.Millisecond)
		g, s := runtime.NumGoroutine(), openSockets(t)
		for same, deadline := 0, time.Now().Add(10*time.Second); same < 5 && time.Now().Before(deadline); {
			time.Sleep(200 * time.Millisecond)
			g2, s2 := runtime.NumGoroutine(), openSockets(t)
			if g2 == g && s2 == s {
				same++
			} else {
				same, g, s = 0, g2, s2
			}
		}
		return g, s
	}
	g0, s0 := settled()

	w := startWrk(t, faultCaddyPort, 4, "k8s.test", "nacos.test")
	if w == nil {
		t.Log("wrk is not installed: the load is the request loop alone (.ci/run installs wrk)")
	}
	l := startLoad(t, faultCaddyPort, 4, []string{"a", "b"}, "k8s.test", "nacos.test")

	var violations []string
	var sampleMu sync.Mutex
	var samples int
	note := func(v string) {
		sampleMu.Lock()
		violations = append(violations, v)
		sampleMu.Unlock()
	}
	var sampling atomic.Bool
	sampling.Store(true)
	var sampler sync.WaitGroup
	sampler.Go(func() {
		for sampling.Load() {
			es, svc, err := p.watchCounts()
			switch {
			case err != nil:
				note(fmt.Sprintf("reading the API server's metrics: %v", err))
			case es != 1 || svc != 1:
				note(fmt.Sprintf("%v EndpointSlice and %v Service watches at %s", es, svc, time.Now().Format("15:04:05.000")))
			}
			sampleMu.Lock()
			samples++
			sampleMu.Unlock()
		}
	})
	time.Sleep(time.Second)
	const reloads = 100
	var durs []time.Duration
	start := time.Now()
	for i := 1; i <= reloads; i++ {
		durs = append(durs, timedLoad(cd, handler(i), apps))
		if got := grpcConns(t, grpc) - nacosBase; got != 1 {
			note(fmt.Sprintf("%d gRPC connections from Caddy to the Nacos server after reload %d", got, i))
		}
		time.Sleep(50 * time.Millisecond)
	}
	took := time.Since(start)
	time.Sleep(time.Second)
	sampling.Store(false)
	sampler.Wait()
	l.Stop()
	var wrkReq, wrkNon2xx int
	var wrkErrs map[string]int
	var wrkOut string
	if w != nil {
		wrkReq, wrkNon2xx, wrkErrs, wrkOut = w.stop(t)
	}
	g1, s1 := settled()

	slices.Sort(durs)
	t.Logf("fault: reloads under load: %d reloads in %v, each p50 %v, p99 %v, max %v", reloads, took.Round(time.Millisecond),
		durs[reloads/2].Round(time.Millisecond), durs[reloads*99/100].Round(time.Millisecond), durs[reloads-1].Round(time.Millisecond))
	t.Logf("fault: reloads under load: request loop %d requests, %d failed, %d connections ended without an answer (first: %v)",
		l.sent.Load(), l.failed.Load(), l.dropped.Load(), l.firstDropped.Load())
	if w != nil {
		t.Logf("fault: reloads under load: wrk %d requests, %d non-2xx, socket errors %v (read/write: Caddy's graceful shutdown of keep-alive connections; see the test's doc)",
			wrkReq, wrkNon2xx, wrkErrs)
	}
	t.Logf("fault: reloads under load: %d samples of the API server's watches, %d violations; goroutines %d before, %d after; open sockets %d before, %d after",
		samples, len(violations), g0, g1, s0, s1)

	if n := l.failed.Load(); n > 0 {
		t.Errorf("%d of %d requests of the request loop failed during the reloads; first: %v", n, l.sent.Load(), l.firstFailed.Load())
	}
	// A connection ended without an answer is Caddy's server across a
	// reload (see above), unless a handler panicked: net/http would end
	// the connection and Caddy log it.
	if log := harness.ReadFile(logFile); strings.Contains(log, "panic") {
		t.Errorf("Caddy logged a panic during the reloads:\n%s", log)
	}
	if wrkNon2xx > 0 || wrkErrs["connect"] > 0 || wrkErrs["timeout"] > 0 {
		t.Errorf("wrk: %d non-2xx answers, socket errors %v of %d requests during the reloads:\n%s", wrkNon2xx, wrkErrs, wrkReq, wrkOut)
	}
	if len(violations) > 0 {
		t.Errorf("the one-watch/one-connection rule broke %d times: %s", len(violations), strings.Join(violations, "; "))
	}
	if samples < 5 {
		t.Errorf("only %d samples of the API server's watches during the reloads", samples)
	}
	if g1 > g0+goroutineTolerance {
		t.Errorf("goroutines grew from %d to %d over %d reloads", g0, g1, reloads)
	}
	if s1 > s0 {
		t.Errorf("open sockets grew from %d to %d over %d reloads", s0, s1, reloads)
	}
}

// goroutineTolerance is how many more goroutines TestFaultReloadsUnderLoad
// accepts after the reloads than before: none of ours or of the sources'
// clients may stay, but the Go runtime and net/http start some on demand
// (such as a timer or a connection's background reader finishing its
// close) that are gone moments later.
const goroutineTolerance = 3
