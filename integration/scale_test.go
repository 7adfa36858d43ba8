//go:build integration && scale

// Scale benchmark (issue 10): what a real Caddy costs, and how fast it
// serves, when its sources follow thousands of services. A measurement, not
// a pass/fail test: it has a build tag of its own, so .ci/run
// (-tags integration) never runs it. Run it with integration/scale.sh, which
// sets the tags, a long timeout and the machine-wide lock.
//
// Kubernetes, against a control plane of its own (etcd, kube-apiserver,
// kube-controller-manager from start-kube.sh):
//   - SCALE_NAMESPACES (10) namespaces of SCALE_SERVICES (1,000)
//     selector-less Services with one EndpointSlice each, of SCALE_ENDPOINTS
//     (10) endpoints, written directly (no Pods, no kubelet), concurrently
//     by SCALE_WORKERS (32) workers through a client with QPS/burst raised.
//     Endpoints carry what the EndpointSlice controller writes (conditions,
//     nodeName, zone, a Pod targetRef), at fake addresses from 10.100.0.0
//     to 10.131.255.255: no request is ever proxied to them, Caddy only
//     lists them;
//   - a Caddy process whose config has one route per referenced Service
//     (host s0042.scale-03), SCALE_REFERENCED (1,000) of them, spread evenly
//     over the namespaces. Measured: time from the process's start until the
//     admin dump (/discovery/upstreams) lists every one with all its
//     endpoints; VmRSS (/proc/<pid>/status) and go_memstats_heap_inuse_bytes
//     (/metrics), also as the difference to a baseline Caddy with the same
//     routes over one static upstream each, per cached endpoint (the
//     informers hold every EndpointSlice of each watched namespace) and per
//     referenced endpoint; the API server's namespaced WATCH requests that
//     Caddy opened (apiserver_longrunning_requests); a heap profile;
//   - a namespace of SCALE_BIG_SERVICES (10,000) Services, then a config
//     reload adding routes to SCALE_HOT (100) of them (as many are
//     referenced in each of the first namespaces). For one namespace of each
//     size (1,000 and 10,000 Services), in the same process: the delay of
//     an EndpointSlice event, from just before the test's PATCH of a
//     referenced slice to the moment the source published the change (the
//     snapshot's time in the admin dump), SCALE_UPDATES (50) times one after
//     the other; and Caddy's CPU time per event (/proc/<pid>/stat
//     utime+stime) for SCALE_CPU_EVENTS (2,000) patches of slices of
//     Services no route references, sent at SCALE_CPU_RATE (150) per second
//     (the same arrival rate in both namespaces: the CPU per event depends
//     on it, as events that arrive together share reads and wake-ups), less
//     Caddy's idle CPU and the dump requests made to see the last one
//     arrive, with the bytes allocated per event (/metrics). That is
//     measured in SCALE_CPU_ROUNDS (3) rounds that alternate the
//     namespaces' order, each after a forced garbage collection once Caddy
//     is idle again; the last round is profiled (/debug/pprof/profile), idle
//     and under the events, to show where the CPU time goes.
//
// Nacos, against a Polaris server of its own: SCALE_NACOS_SERVICES (1,000)
// services of SCALE_NACOS_INSTANCES (10) ephemeral instances at fake
// addresses in 10.160.0.0/16, registered by SCALE_WORKERS SDK clients; a
// Caddy with one route per service: time until the dump lists all of them,
// VmRSS and heap as above per instance, and the ESTABLISHED TCP connections
// of the Caddy process to the server's gRPC port.
//
// Consul, etcd and ZooKeeper, each against a server of its own (a Consul
// -dev agent, Debian's etcd and ZooKeeper): the same
// numbers of services and instances as Nacos (SCALE_NACOS_SERVICES,
// SCALE_NACOS_INSTANCES), registered directly (Consul's catalog API, etcd
// puts in etcd's naming format, Curator's JSON as ephemeral nodes), at fake
// addresses in 10.170.0.0/16; a Caddy with one route per service, and the
// same figures, per instance and per service.
//
// Eureka, against a Polaris of its own (its Eureka API): the same numbers,
// registered as eureka-client does (POST /eureka/apps/<APP>) and renewed
// every 20 s, at fake addresses in 10.170.0.0/16; a Caddy with one route per
// application, started once the server's delta is empty (every change of
// the last minute is in each delta), and the same figures.
//
// For Nacos, Consul, etcd, ZooKeeper and Eureka, Caddy's CPU per change:
// SCALE_CPU_EVENTS changes at up to SCALE_CPU_RATE a second, each moving
// an instance of a followed service to a new address, the last one awaited
// in the admin dump, less Caddy's idle CPU and the dump requests; with a
// CPU profile of the first seconds (cpu-events-<part>.pprof).
//
// Every phase has a deadline (SCALE_CREATE_TIMEOUT 15m for writing objects,
// SCALE_PHASE_TIMEOUT 5m for each other phase); when one passes, what was
// reached is printed and the figures that depend on it are left out.
// SCALE_PARTS ("k8s,nacos,consul,etcd,zookeeper,eureka") picks the parts;
// SCALE_OUT is the directory for results.md, the heap and CPU profiles and
// Caddy's logs (default a new directory under $TMPDIR, kept).
package integration

import (
	"bufio"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"
	"github.com/hashicorp/consul/api"
	"github.com/nacos-group/nacos-sdk-go/v2/clients"
	"github.com/nacos-group/nacos-sdk-go/v2/clients/naming_client"
	"github.com/nacos-group/nacos-sdk-go/v2/common/constant"
	"github.com/nacos-group/nacos-sdk-go/v2/vo"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"

	"github.com/caddy-discovery/caddy-discovery/integration/harness"
	"github.com/caddy-discovery/caddy-discovery/upstreams"
)

// The benchmark's own servers, apart from every other test's ports.
const (
	scKubePort  = 16483
	scEtcdPort  = 23850 // and 23851 (peer)
	scNacosPort = 11858 // gRPC 12858, Polaris's own gRPC 13858
	// The Eureka part's Polaris: its Eureka API, and its Nacos ports
	// (unused; gRPC 12868, Polaris's own gRPC 13868).
	scEurekaPort      = 11761
	scEurekaNacosPort = 11868
	scTargetRSS       = 1024 // bytes of RSS per cached endpoint, the target
	scPort            = 8080 // the endpoints' port
)

// scParams are the benchmark's sizes and deadlines.
type scParams struct {
	namespaces, services, endpoints, referenced     int
	bigServices, hot, updates, cpuEvents, cpuRounds int
	cpuRate                                         int
	nacosServices, nacosInstances, workers          int
	createTimeout, phaseTimeout                     time.Duration
	parts                                           []string
	out                                             string
}

func scParamsFromEnv(t *testing.T) scParams {
	p := scParams{
		namespaces: scEnvInt(t, "SCALE_NAMESPACES", 10), services: scEnvInt(t, "SCALE_SERVICES", 1000),
		endpoints: scEnvInt(t, "SCALE_ENDPOINTS", 10), referenced: scEnvInt(t, "SCALE_REFERENCED", 1000),
		bigServices: scEnvInt(t, "SCALE_BIG_SERVICES", 10000), hot: scEnvInt(t, "SCALE_HOT", 100),
		updates: scEnvInt(t, "SCALE_UPDATES", 50), cpuEvents: scEnvInt(t, "SCALE_CPU_EVENTS", 2000),
		cpuRounds: max(1, scEnvInt(t, "SCALE_CPU_ROUNDS", 3)), cpuRate: scEnvInt(t, "SCALE_CPU_RATE", 150),
		nacosServices: scEnvInt(t, "SCALE_NACOS_SERVICES", 1000), nacosInstances: scEnvInt(t, "SCALE_NACOS_INSTANCES", 10),
		workers:       scEnvInt(t, "SCALE_WORKERS", 32),
		createTimeout: scEnvDuration(t, "SCALE_CREATE_TIMEOUT", 15*time.Minute),
		phaseTimeout:  scEnvDuration(t, "SCALE_PHASE_TIMEOUT", 5*time.Minute),
		parts:         strings.Split(cmp.Or(os.Getenv("SCALE_PARTS"), strings.Join(scParts, ",")), ","),
		out:           os.Getenv("SCALE_OUT"),
	}
	for _, part := range p.parts {
		if !slices.Contains(scParts, part) {
			t.Fatalf("SCALE_PARTS %q: want some of %s, comma-separated", os.Getenv("SCALE_PARTS"), strings.Join(scParts, ", "))
		}
	}
	switch {
	case p.referenced > p.namespaces*p.services || p.referenced%p.namespaces != 0:
		t.Fatalf("SCALE_REFERENCED %d: want a multiple of SCALE_NAMESPACES (%d) up to all %d Services", p.referenced, p.namespaces, p.namespaces*p.services)
	case p.hot > p.services || p.hot > p.bigServices || p.hot > p.referenced/p.namespaces:
		t.Fatalf("SCALE_HOT %d: want at most the Services referenced per namespace (%d) and SCALE_BIG_SERVICES", p.hot, p.referenced/p.namespaces)
	case max(p.services, p.bigServices)*p.endpoints > 1<<17:
		t.Fatalf("SCALE_SERVICES or SCALE_BIG_SERVICES times SCALE_ENDPOINTS: want at most %d endpoints per namespace", 1<<17)
	case p.namespaces > 15 || p.nacosServices*p.nacosInstances > 1<<16:
		t.Fatal("SCALE_NAMESPACES: want at most 15; SCALE_NACOS_SERVICES times SCALE_NACOS_INSTANCES: at most 65536")
	case p.services <= p.referenced/p.namespaces || p.bigServices > 0 && p.bigServices <= p.hot:
		t.Fatal("the CPU phase patches Services no route references: want more Services per namespace than are referenced")
	}
	return p
}

func (p scParams) has(part string) bool { return slices.Contains(p.parts, part) }

// scParts are the parts of the benchmark, in the order they run.
var scParts = []string{"k8s", "nacos", "consul", "etcd", "zookeeper", "eureka"}

// scReport collects the figures, as rows of one markdown table.
type scReport struct {
	mu    sync.Mutex
	rows  [][4]string // source, figure, value, note
	notes []string
}

func (r *scReport) add(source, figure, value, note string) {
	r.mu.Lock()
	r.rows = append(r.rows, [4]string{source, figure, value, note})
	r.mu.Unlock()
	if note != "" {
		note = " (" + note + ")"
	}
	fmt.Printf("scale: %s: %s: %s%s\n", source, figure, value, note)
}

func (r *scReport) note(format string, args ...any) {
	s := fmt.Sprintf(format, args...)
	r.mu.Lock()
	r.notes = append(r.notes, s)
	r.mu.Unlock()
	fmt.Printf("scale: note: %s\n", s)
}

func (r *scReport) markdown(header string) string {
	var s strings.Builder
	s.WriteString(header + "\n\n")
	s.WriteString("| source | figure | value | note |\n|---|---|---:|---|\n")
	for _, row := range r.rows {
		fmt.Fprintf(&s, "| %s | %s | %s | %s |\n", row[0], row[1], row[2], row[3])
	}
	if len(r.notes) > 0 {
		s.WriteString("\n")
		for _, n := range r.notes {
			fmt.Fprintf(&s, "- %s\n", n)
		}
	}
	return s.String()
}

func TestScale(t *testing.T) {
	if raceEnabled {
		t.Skip("the scale benchmark measures a build without -race")
	}
	p := scParamsFromEnv(t)
	if p.out == "" {
		var err error
		if p.out, err = os.MkdirTemp("", "caddy-discovery-scale-"); err != nil {
			t.Fatal(err)
		}
	} else if err := os.MkdirAll(p.out, 0o755); err != nil {
		t.Fatal(err)
	}
	rep := new(scReport)
	note := scMachineNote()
	fmt.Printf("scale: %s\nscale: output in %s\n", note, p.out)
	bin := harness.BuildCaddy(t)
	if p.has("k8s") {
		t.Run("k8s", func(t *testing.T) { scaleKubernetes(t, p, bin, rep) })
	}
	if p.has("nacos") {
		t.Run("nacos", func(t *testing.T) { scaleNacos(t, p, bin, rep) })
	}
	if p.has("consul") {
		t.Run("consul", func(t *testing.T) { scaleConsul(t, p, bin, rep) })
	}
	if p.has("etcd") {
		t.Run("etcd", func(t *testing.T) { scaleEtcd(t, p, bin, rep) })
	}
	if p.has("zookeeper") {
		t.Run("zookeeper", func(t *testing.T) { scaleZooKeeper(t, p, bin, rep) })
	}
	if p.has("eureka") {
		t.Run("eureka", func(t *testing.T) { scaleEureka(t, p, bin, rep) })
	}
	table := rep.markdown(note)
	fmt.Print("\n" + table)
	if err := os.WriteFile(filepath.Join(p.out, "results.md"), []byte(table), 0o644); err != nil {
		t.Error(err)
	}
}

// --- Kubernetes --------------------------------------------------------------

// scNs is the name of namespace i; i == -1 is the big one.
func scNs(i int) string {
	if i < 0 {
		return "scale-big"
	}
	return fmt.Sprintf("scale-%02d", i)
}

func scSvc(i int) string { return fmt.Sprintf("s%04d", i) }

// scEndpointAddr is endpoint k of Service svc in namespace ns (-1: the big
// one): 10.100.0.0 plus a count unique over all namespaces.
func scEndpointAddr(ns, svc, k, perSvc int) netip.Addr {
	if ns < 0 {
		ns = 15
	}
	g := uint32(ns)<<17 + uint32(svc*perSvc+k)
	return netip.AddrFrom4([4]byte{10, 100 + byte(g>>16), byte(g >> 8), byte(g)})
}

// scPatched hands out addresses in 10.250.0.0/16 for patched endpoints, each
// new, so that every patch changes its slice.
var scPatched atomic.Uint32

func scNextPatchAddr() netip.Addr {
	g := scPatched.Add(1)
	return netip.AddrFrom4([4]byte{10, 250, byte(g >> 8), byte(g)})
}

func scService(ns, name string) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{
			Name: "http", Port: 80, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromInt32(scPort),
		}}},
	}
}

// scSlice is the Service's EndpointSlice, with endpoints as the
// EndpointSlice controller writes them for ready Pods.
func scSlice(nsIdx int, ns string, svc, perSvc int) *discoveryv1.EndpointSlice {
	name := scSvc(svc)
	eps := make([]discoveryv1.Endpoint, perSvc)
	for k := range eps {
		g := svc*perSvc + k
		eps[k] = discoveryv1.Endpoint{
			Addresses:  []string{scEndpointAddr(nsIdx, svc, k, perSvc).String()},
			Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true), Serving: ptr.To(true), Terminating: ptr.To(false)},
			NodeName:   ptr.To(fmt.Sprintf("node-%03d", g%200)),
			Zone:       ptr.To(fmt.Sprintf("zone-%c", 'a'+g%3)),
			TargetRef: &corev1.ObjectReference{Kind: "Pod", Namespace: ns, Name: fmt.Sprintf("%s-7d9f8b6c5-%05d", name, k),
				UID: types.UID(fmt.Sprintf("%08x-0000-4000-8000-%012x", nsIdx+1, g))},
		}
	}
	return &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name + "-x7k2p", Labels: map[string]string{
			discoveryv1.LabelServiceName: name, discoveryv1.LabelManagedBy: "scale-benchmark",
		}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To[int32](scPort), Protocol: ptr.To(corev1.ProtocolTCP)}},
		Endpoints:   eps,
	}
}

// scKube is the Kubernetes part's state.
type scKube struct {
	p      scParams
	rep    *scReport
	k      *harness.Kube
	client kubernetes.Interface // QPS and burst raised, protobuf
}

func scaleKubernetes(t *testing.T, p scParams, bin string, rep *scReport) {
	dir, err := os.MkdirTemp("", "caddy-discovery-scale-kube-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	k, err := harness.StartKube(filepath.Join(dir, "kube"), scKubePort, scEtcdPort)
	t.Cleanup(func() {
		if k != nil {
			_ = k.Stop()
		} else {
			_ = exec.Command("bash", filepath.Join(harness.ScriptDir(), "stop-kube.sh"), filepath.Join(dir, "kube")).Run()
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	client, err := kubernetes.NewForConfig(&rest.Config{
		Host: k.Server, BearerToken: k.AdminToken, TLSClientConfig: rest.TLSClientConfig{CAFile: k.CAFile},
		QPS: 2000, Burst: 4000, Timeout: 30 * time.Second,
		ContentConfig: rest.ContentConfig{ContentType: "application/vnd.kubernetes.protobuf"},
	})
	if err != nil {
		t.Fatal(err)
	}
	s := &scKube{p: p, rep: rep, k: k, client: client}
	rep.note("Kubernetes: endpoints are written directly as EndpointSlices of selector-less Services (no Pods, no kubelet), "+
		"at fake addresses from 10.100.0.0 to 10.131.255.255 that nothing listens on: Caddy only lists them, no request is proxied; "+
		"each endpoint carries what the EndpointSlice controller writes (ready/serving/terminating, nodeName, zone, Pod targetRef). "+
		"Objects written by %d workers, client QPS 2000, burst 4000, protobuf", p.workers)

	var namespaces []int
	for i := range p.namespaces {
		namespaces = append(namespaces, i)
	}
	total := p.namespaces * p.services
	if !s.create(t, fmt.Sprintf("creation (%d namespaces x %d Services x %d endpoints)", p.namespaces, p.services, p.endpoints), namespaces, p.services) {
		return
	}

	// Caddy with the same routes over one static upstream each: what the
	// routes themselves cost.
	refs := s.references()
	base := scBaseline(t, p, bin, len(refs), "k8s")

	// Watches on the API server before Caddy: the controller-manager's, if
	// any in a namespace.
	eps0, svc0, err := scWatches(k)
	if err != nil {
		t.Fatal(err)
	}

	var routes []string
	for _, r := range refs {
		routes = append(routes, scRoute(r.host, map[string]any{"source": "k8s", "service": r.service}))
	}
	admin := freeAddr(t)
	apps := fmt.Sprintf(`"k8s": {"clusters": {"default": {"server": %q, "token": %q, "ca_file": %q}}}`, k.Server, k.AdminToken, k.CAFile)
	config := scWriteConfig(t, admin, routes, apps)
	start := time.Now()
	proc := harness.StartProcess(t, bin, config, admin)
	defer scSaveLog(t, p, proc, "caddy-k8s.log")
	pid := scCaddyPid(t, proc)
	want := map[string]int{}
	for _, r := range refs {
		want[r.service] = p.endpoints
	}
	served, ok := scAwaitServed(proc, "k8s", want, p.phaseTimeout)
	if !ok {
		rep.add("k8s", fmt.Sprintf("start until all %d Services are served", len(refs)), "—",
			fmt.Sprintf("deadline %s passed with %d of %d served", p.phaseTimeout, served, len(refs)))
		return
	}
	rep.add("k8s", fmt.Sprintf("start until all %d Services are served", len(refs)), scSeconds(time.Since(start)),
		"from starting the process to the admin dump listing every referenced Service with all its endpoints")

	cached := total * p.endpoints
	referenced := len(refs) * p.endpoints
	scMemory(t, p, rep, "k8s", proc, pid, base, []scPer{{"cached endpoint", cached}, {"referenced endpoint", referenced}},
		fmt.Sprintf("the informers hold the %d EndpointSlices (%d endpoints) and %d Services of the %d namespaces; routes reference %d Services (%d endpoints)",
			total, cached, total, p.namespaces, len(refs), referenced))

	eps1, svc1, err := scWatches(k)
	if err != nil {
		t.Fatal(err)
	}
	rep.add("k8s", "WATCH requests Caddy opened on the API server", fmt.Sprintf("%.0f EndpointSlices + %.0f Services", eps1-eps0, svc1-svc0),
		fmt.Sprintf("expected one per namespace and resource: %d + %d, for %d Services (apiserver_longrunning_requests, namespace scope)",
			p.namespaces, p.namespaces, len(refs)))

	// Event cost, at p.services and at p.bigServices Services in the namespace.
	hotNs := []int{0}
	if p.bigServices > 0 {
		if s.create(t, fmt.Sprintf("creation of namespace %s (%d Services x %d endpoints)", scNs(-1), p.bigServices, p.endpoints), []int{-1}, p.bigServices) {
			hotNs = append(hotNs, -1)
			for i := range p.hot {
				routes = append(routes, scRoute(scSvc(i)+"."+scNs(-1), map[string]any{"source": "k8s", "service": fmt.Sprintf("%s/%s:http", scNs(-1), scSvc(i))}))
				want[fmt.Sprintf("%s/%s:http", scNs(-1), scSvc(i))] = p.endpoints
			}
			cfg, err := os.ReadFile(scWriteConfig(t, admin, routes, apps))
			if err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			if code, body, err := proc.Request(http.MethodPost, "/load", string(cfg)); err != nil || code != http.StatusOK {
				t.Fatalf("reloading caddy with routes to %s: %d %v %s", scNs(-1), code, err, body)
			}
			if served, ok := scAwaitServed(proc, "k8s", want, p.phaseTimeout); !ok {
				rep.add("k8s", fmt.Sprintf("reload adding %d Services of %s until served", p.hot, scNs(-1)), "—",
					fmt.Sprintf("deadline %s passed with %d of %d served", p.phaseTimeout, served, len(want)))
				hotNs = hotNs[:1]
			} else {
				rep.add("k8s", fmt.Sprintf("reload adding %d Services of %s until served", p.hot, scNs(-1)), scSeconds(time.Since(start)),
					"a config reload; the new namespace's informers list it from scratch")
			}
		}
	}
	for _, ns := range hotNs {
		n := p.services
		if ns < 0 {
			n = p.bigServices
		}
		s.latency(t, proc, ns, n)
	}
	s.cpuRounds(t, proc, pid, hotNs)
	if log := proc.Output.String(); strings.Contains(log, "panic") {
		t.Errorf("caddy's log shows a panic: the figures are not valid")
	}
}

type scRef struct{ host, service string }

// references are the Services the routes reference: the first
// referenced/namespaces of each namespace.
func (s *scKube) references() []scRef {
	var refs []scRef
	for ns := range s.p.namespaces {
		for i := range s.p.referenced / s.p.namespaces {
			refs = append(refs, scRef{host: scSvc(i) + "." + scNs(ns), service: fmt.Sprintf("%s/%s:http", scNs(ns), scSvc(i))})
		}
	}
	return refs
}

// create makes the namespaces and, in each, services Services with their
// EndpointSlices, within the create deadline; it reports the time and
// whether everything was created.
func (s *scKube) create(t *testing.T, what string, namespaces []int, services int) bool {
	for _, ns := range namespaces {
		if _, err := s.client.CoreV1().Namespaces().Create(t.Context(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: scNs(ns)}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	// The default ServiceAccount admission is off (start-kube.sh); nothing
	// else to wait for before writing.
	var svcs, eslices atomic.Int64
	use := s.usage()
	lat := s.postLatency()
	start := time.Now()
	n := len(namespaces) * services
	done, err := scPool(t.Context(), s.p.createTimeout, n, s.p.workers, func(ctx context.Context, _, i int) error {
		nsIdx, svc := namespaces[i/services], i%services
		ns := scNs(nsIdx)
		if err := scRetry(ctx, func() error {
			_, err := s.client.CoreV1().Services(ns).Create(ctx, scService(ns, scSvc(svc)), metav1.CreateOptions{})
			return err
		}); err != nil {
			return fmt.Errorf("creating Service %s/%s: %w", ns, scSvc(svc), err)
		}
		svcs.Add(1)
		if err := scRetry(ctx, func() error {
			_, err := s.client.DiscoveryV1().EndpointSlices(ns).Create(ctx, scSlice(nsIdx, ns, svc, s.p.endpoints), metav1.CreateOptions{})
			return err
		}); err != nil {
			return fmt.Errorf("creating the EndpointSlice of %s/%s: %w", ns, scSvc(svc), err)
		}
		eslices.Add(1)
		return nil
	})
	elapsed := time.Since(start)
	used := use() + "; " + lat()
	objects := svcs.Load() + eslices.Load()
	rate := fmt.Sprintf("%.0f objects/s", float64(objects)/elapsed.Seconds())
	if done < n {
		s.rep.add("k8s", what, "—", fmt.Sprintf("stopped after %s (%v) with %d Services and %d EndpointSlices (%d endpoints) of %d written, %s; %s",
			scSeconds(elapsed), cmp.Or[error](err, errors.New("deadline")), svcs.Load(), eslices.Load(), eslices.Load()*int64(s.p.endpoints), n, rate, used))
		return false
	}
	s.rep.add("k8s", what, scSeconds(elapsed), fmt.Sprintf("%d Services + %d EndpointSlices (%d endpoints), %s, %d workers; %s",
		svcs.Load(), eslices.Load(), eslices.Load()*int64(s.p.endpoints), rate, s.p.workers, used))
	return true
}

// usage starts counting the CPU time the control plane, this test and the
// whole machine use; the function it returns says how much they used.
func (s *scKube) usage() func() string {
	names := []string{"kube-apiserver", "etcd", "kube-controller-manager"}
	pids := make([]int, len(names))
	before := make([]time.Duration, len(names)+1)
	for i, name := range names {
		pids[i], _ = readPid(s.k.Dir, name)
		before[i] = scProcCPU(pids[i])
	}
	before[len(names)] = scProcCPU(os.Getpid())
	busy0, t0 := scMachineBusy(), time.Now()
	return func() string {
		var parts []string
		var ours time.Duration
		for i, name := range append(names, "the test") {
			pid := os.Getpid()
			if i < len(names) {
				pid = pids[i]
			}
			d := scProcCPU(pid) - before[i]
			ours += d
			parts = append(parts, fmt.Sprintf("%s %.0f s", name, d.Seconds()))
		}
		busy := scMachineBusy() - busy0
		return fmt.Sprintf("CPU used meanwhile: %s; the machine was busy %.0f of %.0f CPU-seconds (%.0f s by other processes)",
			strings.Join(parts, ", "), busy.Seconds(), time.Since(t0).Seconds()*float64(runtime.NumCPU()), max(0, (busy-ours).Seconds()))
	}
}

// postLatency starts reading the API server's mean time to serve a create
// (POST) of a Service and of an EndpointSlice; the function it returns says
// what it was since.
func (s *scKube) postLatency() func() string {
	read := func(resource string) (sum, count float64) {
		sum, _ = s.k.Metric("apiserver_request_duration_seconds_sum", `verb="POST"`, `resource="`+resource+`"`)
		count, _ = s.k.Metric("apiserver_request_duration_seconds_count", `verb="POST"`, `resource="`+resource+`"`)
		return sum, count
	}
	resources := []string{"services", "endpointslices"}
	var before [2][2]float64
	for i, r := range resources {
		before[i][0], before[i][1] = read(r)
	}
	return func() string {
		var parts []string
		for i, r := range resources {
			sum, count := read(r)
			if n := count - before[i][1]; n > 0 {
				parts = append(parts, fmt.Sprintf("%s %.1f ms", r, (sum-before[i][0])/n*1000))
			}
		}
		return "the API server's mean time to serve a create: " + strings.Join(parts, ", ")
	}
}

// scProcCPU is a process's CPU time (utime+stime), or 0 if it cannot be read.
func scProcCPU(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(utime+stime) * 10 * time.Millisecond // USER_HZ is 100 on Linux
}

// scMachineBusy is the CPU time all CPUs spent other than idle or waiting
// for I/O (/proc/stat).
func scMachineBusy() time.Duration {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	var busy int64
	for i, f := range strings.Fields(line)[1:] {
		v, _ := strconv.ParseInt(f, 10, 64)
		if i != 3 && i != 4 && i < 8 { // idle, iowait; guest time is in user already
			busy += v
		}
	}
	return time.Duration(busy) * 10 * time.Millisecond
}

// scRetry runs a write until it succeeds, is refused for good, or ctx ends;
// throttling and timeouts are retried.
func scRetry(ctx context.Context, write func() error) error {
	for attempt := 0; ; attempt++ {
		err := write()
		if err == nil || apierrors.IsAlreadyExists(err) && attempt > 0 {
			return nil
		}
		retriable := apierrors.IsTooManyRequests(err) || apierrors.IsServerTimeout(err) || apierrors.IsTimeout(err) ||
			apierrors.IsServiceUnavailable(err) || apierrors.IsInternalError(err)
		if !retriable || attempt == 5 || ctx.Err() != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Duration(attempt+1) * 200 * time.Millisecond):
		}
	}
}

// scPool runs job for i in [0, n) on workers goroutines (each with its
// number w) until all are done, one fails, or timeout passes; it returns
// how many succeeded and the first failure.
func scPool(ctx context.Context, timeout time.Duration, n, workers int, job func(ctx context.Context, w, i int) error) (int, error) {
	return scPaced(ctx, timeout, n, workers, 0, job)
}

// scPaced is scPool starting at most rate jobs per second (0: no limit).
func scPaced(ctx context.Context, timeout time.Duration, n, workers, rate int, job func(ctx context.Context, w, i int) error) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var (
		next, done atomic.Int64
		once       sync.Once
		first      error
		wg         sync.WaitGroup
	)
	var tick <-chan time.Time
	if rate > 0 {
		t := time.NewTicker(time.Second / time.Duration(rate))
		defer t.Stop()
		tick = t.C
	}
	for w := range workers {
		wg.Go(func() {
			for ctx.Err() == nil {
				if tick != nil {
					select {
					case <-tick:
					case <-ctx.Done():
						return
					}
				}
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				if err := job(ctx, w, i); err != nil {
					if ctx.Err() == nil {
						once.Do(func() { first = err })
					}
					cancel()
					return
				}
				done.Add(1)
			}
		})
	}
	wg.Wait()
	return int(done.Load()), first
}

// patch replaces the address of a slice's last endpoint with a new one and
// returns it.
func (s *scKube) patch(ctx context.Context, nsIdx, svc int) (netip.Addr, error) {
	a := scNextPatchAddr()
	body := fmt.Sprintf(`[{"op": "replace", "path": "/endpoints/%d/addresses/0", "value": %q}]`, s.p.endpoints-1, a)
	_, err := s.client.DiscoveryV1().EndpointSlices(scNs(nsIdx)).Patch(ctx, scSvc(svc)+"-x7k2p", types.JSONPatchType, []byte(body), metav1.PatchOptions{})
	return a, err
}

// latency patches referenced slices of namespace ns one after the other and
// takes, for each, the time from before the PATCH to the source publishing
// the change (the snapshot's time in the admin dump).
func (s *scKube) latency(t *testing.T, proc *harness.Process, nsIdx, services int) {
	t.Helper()
	what := fmt.Sprintf("EndpointSlice event, PATCH to published, %d Services in the namespace", services)
	deadline := time.Now().Add(s.p.phaseTimeout)
	var delays []time.Duration
	for i := range s.p.updates {
		if time.Now().After(deadline) {
			break
		}
		svc := i % s.p.hot
		service := fmt.Sprintf("%s/%s:http", scNs(nsIdx), scSvc(svc))
		start := time.Now()
		a, err := s.patch(t.Context(), nsIdx, svc)
		if err != nil {
			t.Fatalf("patching the EndpointSlice of %s: %v", service, err)
		}
		at, ok := scAwaitDial(proc, "k8s", service, netip.AddrPortFrom(a, scPort).String(), deadline)
		if !ok {
			break
		}
		delays = append(delays, at.Sub(start))
	}
	if len(delays) < s.p.updates {
		s.rep.add("k8s", what, "—", fmt.Sprintf("deadline %s passed after %d of %d updates", s.p.phaseTimeout, len(delays), s.p.updates))
		if len(delays) == 0 {
			return
		}
	}
	slices.Sort(delays)
	s.rep.add("k8s", what, fmt.Sprintf("p50 %s, p99 %s", scMillis(scPercentile(delays, 0.50)), scMillis(scPercentile(delays, 0.99))),
		fmt.Sprintf("%d updates of referenced slices one after the other, namespace %s; min %s, max %s; includes the API server's write and watch delivery",
			len(delays), scNs(nsIdx), scMillis(delays[0]), scMillis(delays[len(delays)-1])))
}

// scCPURound is one measurement of the CPU time per event.
type scCPURound struct {
	per, perSched time.Duration // CPU per event: utime+stime, schedstat
	alloc         float64       // bytes allocated per event
	gcs           float64       // GC cycles in the window
	note, profile string
}

// cpuRounds measures the CPU time per event of each namespace, in rounds
// that alternate the namespaces' order (so that neither is always measured
// after the other's garbage), and reports the medians. The last round is
// profiled: its CPU profiles are saved, and the top of each printed.
func (s *scKube) cpuRounds(t *testing.T, proc *harness.Process, pid int, namespaces []int) {
	t.Helper()
	rounds := map[int][]scCPURound{}
	var wall time.Duration
	for r := range s.p.cpuRounds {
		order := slices.Clone(namespaces)
		if r%2 == 1 {
			slices.Reverse(order)
		}
		for _, ns := range order {
			profile := ""
			if r == s.p.cpuRounds-1 {
				profile = filepath.Join(s.p.out, fmt.Sprintf("cpu-events-%s.pprof", scNs(ns)))
			}
			round, w, ok := s.cpu(t, proc, pid, ns, profile, wall)
			if !ok {
				return
			}
			wall = max(wall, w)
			fmt.Printf("scale: k8s: CPU round %d, %s (%d Services): %d µs per event (%d µs by schedstat), %.1f KB allocated; %s\n",
				r+1, scNs(ns), s.nsServices(ns), round.per.Microseconds(), round.perSched.Microseconds(), round.alloc/1024, round.note)
			rounds[ns] = append(rounds[ns], round)
		}
	}
	for _, ns := range namespaces {
		rs := rounds[ns]
		per := make([]float64, len(rs))
		sched := make([]float64, len(rs))
		alloc := make([]float64, len(rs))
		gcs := 0.0
		profile := ""
		for i, r := range rs {
			per[i], sched[i], alloc[i] = float64(r.per), float64(r.perSched), r.alloc
			gcs += r.gcs
			profile = cmp.Or(r.profile, profile)
		}
		slices.Sort(per)
		s.rep.add("k8s", fmt.Sprintf("Caddy CPU per EndpointSlice event of an unreferenced Service, %d Services in the namespace", s.nsServices(ns)),
			fmt.Sprintf("%d µs, %.1f KB allocated", time.Duration(scMedian(per)).Microseconds(), scMedian(alloc)/1024),
			fmt.Sprintf("median of %d rounds of %d patches at %d/s (+1 to a referenced slice, the last) in namespace %s: %d–%d µs; %d µs by schedstat; "+
				"less Caddy's idle CPU and the dump requests; %.0f GC cycles in all the windows (one forced before each); %s",
				len(rs), s.p.cpuEvents, s.p.cpuRate, scNs(ns), time.Duration(per[0]).Microseconds(), time.Duration(per[len(per)-1]).Microseconds(),
				time.Duration(scMedian(sched)).Microseconds(), gcs, profile))
	}
}

func (s *scKube) nsServices(ns int) int {
	if ns < 0 {
		return s.p.bigServices
	}
	return s.p.services
}

// cpu patches slices of Services no route references and takes Caddy's CPU
// time per event: the CPU time from the first patch until a last patch of
// a referenced slice (sent after them, so delivered after them on the same
// watch) shows in the dump, less the idle CPU over that time and the dump
// requests made to see it. A garbage collection is forced first, so that
// one left over from earlier work does not land in the window; the GC
// cycles that run in the window and the bytes allocated per event (which
// is what garbage collection costs in the long run) are reported with it.
// With profile set, a CPU profile of Caddy is taken over the window (its
// length guessed from an earlier one, wall) and saved there. It returns
// the window's length.
func (s *scKube) cpu(t *testing.T, proc *harness.Process, pid, nsIdx int, profile string, wall time.Duration) (scCPURound, time.Duration, bool) {
	t.Helper()
	what := fmt.Sprintf("Caddy CPU per EndpointSlice event of an unreferenced Service, %d Services in the namespace", s.nsServices(nsIdx))
	scForceGC(t, proc)
	idleProfile := ""
	if profile != "" {
		idleProfile = strings.Replace(profile, "cpu-events-", "cpu-idle-", 1)
	}
	idle, dump, settle := scIdleCost(t, proc, pid, 3*time.Second, idleProfile)
	unreferenced := s.nsServices(nsIdx) - s.p.referenced/s.p.namespaces
	if nsIdx < 0 {
		unreferenced = s.nsServices(nsIdx) - s.p.hot
	}
	first := s.nsServices(nsIdx) - unreferenced
	var profiled <-chan error
	if profile != "" {
		profiled = scProfileCPU(proc, profile, max(2, int(wall.Seconds()+0.5)))
		time.Sleep(100 * time.Millisecond) // the profile starts
	}
	m0 := scReadMemCounts(t, proc)
	cpu0, sched0 := scCPU(t, pid), scSchedCPU(pid)
	start := time.Now()
	sent, err := scPaced(t.Context(), s.p.phaseTimeout, s.p.cpuEvents, 8, s.p.cpuRate, func(ctx context.Context, _, i int) error {
		_, err := s.patch(ctx, nsIdx, first+i%unreferenced)
		return err
	})
	if sent == 0 {
		s.rep.add("k8s", what, "—", fmt.Sprintf("no patch went through: %v", err))
		return scCPURound{}, 0, false
	}
	fenceSvc := fmt.Sprintf("%s/%s:http", scNs(nsIdx), scSvc(0))
	a, err := s.patch(t.Context(), nsIdx, 0)
	if err != nil {
		t.Fatal(err)
	}
	sendTime := time.Since(start)
	polls0 := scDumps.Load()
	if _, ok := scAwaitDial(proc, "k8s", fenceSvc, netip.AddrPortFrom(a, scPort).String(), time.Now().Add(s.p.phaseTimeout)); !ok {
		s.rep.add("k8s", what, "—", fmt.Sprintf("the last event did not arrive within %s", s.p.phaseTimeout))
		return scCPURound{}, 0, false
	}
	elapsed := time.Since(start)
	cpu := scCPU(t, pid) - cpu0
	sched := scSchedCPU(pid) - sched0
	m1 := scReadMemCounts(t, proc)
	polls := scDumps.Load() - polls0
	events := sent + 1
	overhead := time.Duration(float64(idle)*elapsed.Seconds()) + time.Duration(polls)*dump.cpu
	r := scCPURound{
		per:      (cpu - overhead) / time.Duration(events),
		perSched: (sched - overhead) / time.Duration(events),
		gcs:      m1.NumGC - m0.NumGC,
		alloc:    (m1.TotalAlloc - m0.TotalAlloc - float64(polls)*dump.alloc) / float64(events),
	}
	r.note = fmt.Sprintf("%d events in %s (%.0f/s): %s CPU, less %s idle (%s/s, after %s) and %d dump requests; %.0f GC cycles in the window",
		events, scSeconds(elapsed), float64(events)/sendTime.Seconds(), scMillis(cpu), scMillis(overhead), scMillis(idle), settle, polls, r.gcs)
	if sent < s.p.cpuEvents {
		r.note += fmt.Sprintf("; only %d of %d patches within the deadline", sent, s.p.cpuEvents)
	}
	if profiled != nil {
		if err := <-profiled; err != nil {
			t.Errorf("profiling caddy: %v", err)
		} else {
			r.profile = s.showProfile(t, profile)
		}
	}
	return r, elapsed, true
}

// showProfile saves the top of a CPU profile, by cumulative time, and
// returns the shares of the profile's samples that some parts of the work
// take.
func (s *scKube) showProfile(t *testing.T, file string) string {
	bin := harness.BuildCaddy(t)
	out, err := exec.Command("go", "tool", "pprof", "-top", "-cum", "-nodecount=60", bin, file).CombinedOutput()
	if err != nil {
		t.Logf("go tool pprof %s: %v\n%s", file, err, out)
		return ""
	}
	_ = os.WriteFile(strings.TrimSuffix(file, ".pprof")+"-top.txt", out, 0o644)
	var shares []string
	for _, f := range []struct{ name, focus string }{
		{"our code", `caddy-discovery/caddy-discovery/`},
		{"watch decoding", `watch\.\(\*StreamWatcher\)\.receive`},
		{"informer (reflector, DeltaFIFO, indexer, handlers)", `cache\.\(\*Reflector\)|cache\.\(\*DeltaFIFO\)|sharedIndexInformer|processorListener|threadSafeMap`},
		{"HTTP/2 and TLS", `http2\.|crypto/tls\.`},
		{"scheduler", `runtime\.schedule|runtime\.findRunnable`},
		{"GC workers", `runtime\.gcBgMarkWorker`},
	} {
		out, err := exec.Command("go", "tool", "pprof", "-top", "-nodecount=1000000", "-focus="+f.focus, bin, file).CombinedOutput()
		if err != nil {
			t.Logf("go tool pprof %s: %v\n%s", file, err, out)
			return ""
		}
		// With every node shown, their flat sum is the focus's total.
		m := scPprofShowing.FindStringSubmatch(string(out))
		share := "0%"
		if m != nil {
			share = m[2]
		}
		shares = append(shares, f.name+" "+share)
	}
	total := ""
	if m := scPprofShowing.FindStringSubmatch(string(out)); m != nil {
		total = m[3]
	}
	return fmt.Sprintf("CPU profile of the last round (%s sampled): %s", total, strings.Join(shares, ", "))
}

var scPprofShowing = regexp.MustCompile(`Showing nodes accounting for ([^,]+), ([0-9.]+%) of ([^ ]+) total`)

// scForceGC has Caddy collect garbage: the heap profile's ?gc=1 does.
// scMemCounts are Caddy's runtime.MemStats counters, from the admin API's
// /debug/vars: unlike a /metrics scrape, reading them allocates next to
// nothing in Caddy, whatever the number of services (a scrape of 10,000
// services' series allocates megabytes, which a window measuring the
// allocations per change would count).
type scMemCounts struct {
	TotalAlloc float64
	NumGC      float64
}

func scReadMemCounts(t *testing.T, proc *harness.Process) scMemCounts {
	t.Helper()
	code, body, err := proc.Request(http.MethodGet, "/debug/vars", "")
	if err != nil || code != http.StatusOK {
		t.Fatalf("GET /debug/vars: %d %v", code, err)
	}
	var v struct {
		Memstats scMemCounts `json:"memstats"`
	}
	if err := json.Unmarshal([]byte(body), &v); err != nil {
		t.Fatalf("GET /debug/vars: %v", err)
	}
	return v.Memstats
}

// scSaveTop saves the top nodes of a CPU profile beside it (-top.txt) and
// returns them.
func scSaveTop(t *testing.T, file string, nodes int) []byte {
	out, _ := exec.Command("go", "tool", "pprof", "-top", fmt.Sprintf("-nodecount=%d", nodes), harness.BuildCaddy(t), file).CombinedOutput()
	_ = os.WriteFile(strings.TrimSuffix(file, ".pprof")+"-top.txt", out, 0o644)
	return out
}

// scProfileCPU profiles Caddy's CPU for secs seconds, from now, into file;
// the channel says when it is done, and how.
func scProfileCPU(proc *harness.Process, file string, secs int) <-chan error {
	done := make(chan error, 1)
	go func() {
		code, body, err := proc.Request(http.MethodGet, fmt.Sprintf("/debug/pprof/profile?seconds=%d", secs), "")
		if err == nil && code != http.StatusOK {
			err = fmt.Errorf("status %d", code)
		}
		if err == nil {
			err = os.WriteFile(file, []byte(body), 0o644)
		}
		done <- err
	}()
	return done
}

func scForceGC(t *testing.T, proc *harness.Process) {
	t.Helper()
	if code, _, err := proc.Request(http.MethodGet, "/debug/pprof/heap?gc=1", ""); err != nil || code != http.StatusOK {
		t.Fatalf("GET /debug/pprof/heap?gc=1: %d %v", code, err)
	}
}

// scDumpCost is what one admin dump request costs Caddy.
type scDumpCost struct {
	cpu   time.Duration
	alloc float64 // bytes
}

// scIdleCost is Caddy's CPU time per second when nothing happens, and what
// one admin dump request costs. It first waits, up to 15 s, for the work
// that follows a garbage collection (the scavenger returning memory) to
// settle: until a second passes with at most 5 ms of CPU time; it returns
// how long that took. It measures the idle CPU over window; with profile
// set, it profiles it there.
func scIdleCost(t *testing.T, proc *harness.Process, pid int, window time.Duration, profile string) (idle time.Duration, dump scDumpCost, settle string) {
	t.Helper()
	start := time.Now()
	for time.Since(start) < 15*time.Second {
		c0 := scCPU(t, pid)
		time.Sleep(time.Second)
		if scCPU(t, pid)-c0 <= 5*time.Millisecond {
			break
		}
	}
	settle = scSeconds(time.Since(start))
	c0, t0 := scCPU(t, pid), time.Now()
	if profile != "" {
		code, body, err := proc.Request(http.MethodGet, fmt.Sprintf("/debug/pprof/profile?seconds=%d", int(window.Seconds())), "")
		if err != nil || code != http.StatusOK {
			t.Fatalf("profiling idle caddy: %d %v", code, err)
		}
		if err := os.WriteFile(profile, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	} else {
		time.Sleep(window)
	}
	idle = time.Duration(float64(scCPU(t, pid)-c0) / time.Since(t0).Seconds())
	if profile != "" {
		out := scSaveTop(t, profile, 25)
		fmt.Printf("scale: k8s: idle CPU %s/s; profile %s:\n%s\n", scMillis(idle), profile, out)
	}
	a0 := scReadMemCounts(t, proc).TotalAlloc
	c0, t0 = scCPU(t, pid), time.Now()
	const n = 10
	for range n {
		if _, err := scDump(proc); err != nil {
			t.Fatal(err)
		}
	}
	dump.cpu = max(0, scCPU(t, pid)-c0-time.Duration(float64(idle)*time.Since(t0).Seconds())) / n
	dump.alloc = (scReadMemCounts(t, proc).TotalAlloc - a0) / n
	return idle, dump, settle
}

// scWatches reads the API server's open namespaced WATCH requests on
// EndpointSlices and on Services.
func scWatches(k *harness.Kube) (endpointSlices, services float64, err error) {
	if endpointSlices, err = k.Metric("apiserver_longrunning_requests", `resource="endpointslices"`, `scope="namespace"`, `verb="WATCH"`); err != nil {
		return 0, 0, err
	}
	services, err = k.Metric("apiserver_longrunning_requests", `resource="services"`, `scope="namespace"`, `verb="WATCH"`)
	return endpointSlices, services, err
}

// --- Nacos -------------------------------------------------------------------

func scaleNacos(t *testing.T, p scParams, bin string, rep *scReport) {
	dir, err := os.MkdirTemp("", "caddy-discovery-scale-polaris-")
	if err != nil {
		t.Fatal(err)
	}
	pol := &polaris{dir: dir, port: scNacosPort}
	t.Cleanup(func() {
		_ = exec.Command("./stop-polaris.sh", dir).Run()
		_ = os.RemoveAll(dir)
	})
	pol.start(t)
	rep.note("Nacos: ephemeral instances at fake addresses in 10.160.0.0/16 (nothing listens; no request is proxied), "+
		"registered through nacos-sdk-go by %d SDK clients (one gRPC connection each), in Polaris %s speaking the Nacos protocol", p.workers, "v1.18.1")

	services, per := p.nacosServices, p.nacosInstances
	name := func(i int) string { return fmt.Sprintf("scale-%04d", i) }
	regs := make([]naming_client.INamingClient, p.workers)
	for w := range regs {
		d := t.TempDir()
		c, err := clients.NewNamingClient(vo.NacosClientParam{
			ClientConfig:  &constant.ClientConfig{TimeoutMs: 10000, NotLoadCacheAtStart: true, CacheDir: d, LogDir: d, LogLevel: "error"},
			ServerConfigs: []constant.ServerConfig{{IpAddr: "127.0.0.1", Port: uint64(pol.port)}},
		})
		if err != nil {
			t.Fatalf("registering client: %v", err)
		}
		regs[w] = c
	}
	t.Cleanup(func() {
		for _, c := range regs {
			c.CloseClient()
		}
	})
	time.Sleep(100 * time.Millisecond) // the server rejects the SDK's duplicate first re-send otherwise (see registrar)
	start := time.Now()
	done, err := scPool(t.Context(), p.createTimeout, services*per, p.workers, func(ctx context.Context, w, i int) error {
		svc, k := i/per, i%per
		g := uint32(i)
		param := vo.RegisterInstanceParam{
			Ip: netip.AddrFrom4([4]byte{10, 160, byte(g >> 8), byte(g)}).String(), Port: scPort, Weight: 1, Enable: true, Healthy: true,
			ServiceName: name(svc), GroupName: "DEFAULT_GROUP", ClusterName: "DEFAULT", Ephemeral: true,
			Metadata: map[string]string{"version": "v1", "instance": strconv.Itoa(k)},
		}
		var err error
		for range 3 { // (false, nil) is the server rejecting a duplicate re-send; the instance is registered
			var ok bool
			if ok, err = regs[w].RegisterInstance(param); ok || err == nil {
				return nil
			}
			time.Sleep(100 * time.Millisecond)
		}
		return fmt.Errorf("registering %s %s: %w", param.ServiceName, param.Ip, err)
	})
	elapsed := time.Since(start)
	what := fmt.Sprintf("registration (%d services x %d instances)", services, per)
	if done < services*per {
		rep.add("nacos", what, "—", fmt.Sprintf("stopped after %s (%v) with %d of %d instances registered",
			scSeconds(elapsed), cmp.Or[error](err, errors.New("deadline")), done, services*per))
		return
	}
	rep.add("nacos", what, scSeconds(elapsed), fmt.Sprintf("%.0f instances/s, %d SDK clients", float64(done)/elapsed.Seconds(), p.workers))

	apps := fmt.Sprintf(`"nacos": {"servers": {"default": {"addresses": ["127.0.0.1:%d"]}}}`, pol.port)
	proc, pid, ok := scServe(t, p, bin, rep, "nacos", "subscriptions", apps, func(i int) (string, string) {
		return name(i), "DEFAULT_GROUP@@" + name(i) // as the dump names it
	})
	if !ok {
		return
	}
	conns := scConnsTo(t, pid, pol.port+1000)
	rep.add("nacos", "gRPC connections from Caddy to the server", strconv.Itoa(conns),
		fmt.Sprintf("ESTABLISHED TCP connections of the Caddy process to port %d; expected one per server set (here one) for %d services", pol.port+1000, services))
	// A change: one of the test's SDK clients registers an instance at a
	// new address (a client holds one instance per service: its earlier
	// one of that service, if any, goes).
	scEventCPU(t, p, rep, "nacos", proc, pid, func(ctx context.Context, i int) (string, netip.AddrPort, error) {
		svc, a := name(i%services), netip.AddrPortFrom(scNextPatchAddr(), scPort)
		_, err := regs[i%len(regs)].RegisterInstance(vo.RegisterInstanceParam{
			Ip: a.Addr().String(), Port: scPort, Weight: 1, Enable: true, Healthy: true,
			ServiceName: svc, GroupName: "DEFAULT_GROUP", ClusterName: "DEFAULT", Ephemeral: true,
		})
		return "DEFAULT_GROUP@@" + svc, a, err
	})
}

// scServe measures a Caddy with one route per service of part (the
// source), p.nacosServices services of p.nacosInstances instances each,
// already registered: the time from its start until the admin dump lists
// every service (service(i) is the source's service field and the dump's
// name for service i) with all its instances, and its memory per instance
// and per service over a baseline Caddy with as many routes. watches says
// what Caddy keeps per service ("subscriptions"). It returns Caddy's pid, or
// false when the deadline passed.
func scServe(t *testing.T, p scParams, bin string, rep *scReport, part, watches, apps string, service func(i int) (field, dumped string)) (*harness.Process, int, bool) {
	key := "service"
	if part == "eureka" {
		key = "app"
	}
	t.Helper()
	services, per := p.nacosServices, p.nacosInstances
	base := scBaseline(t, p, bin, services, part)
	var routes []string
	want := map[string]int{}
	for i := range services {
		field, dumped := service(i)
		routes = append(routes, scRoute(fmt.Sprintf("s%04d.%s", i, part), map[string]any{"source": part, key: field}))
		want[dumped] = per
	}
	admin := freeAddr(t)
	config := scWriteConfig(t, admin, routes, apps)
	start := time.Now()
	proc := harness.StartProcess(t, bin, config, admin)
	t.Cleanup(func() { scSaveLog(t, p, proc, "caddy-"+part+".log") })
	pid := scCaddyPid(t, proc)
	what := fmt.Sprintf("start until all %d services are listed", services)
	if served, ok := scAwaitServed(proc, part, want, p.phaseTimeout); !ok {
		rep.add(part, what, "—", fmt.Sprintf("deadline %s passed with %d of %d listed", p.phaseTimeout, served, services))
		return proc, pid, false
	}
	rep.add(part, what, scSeconds(time.Since(start)), "from starting the process to the admin dump listing every service with all its instances")
	total := services * per
	scMemory(t, p, rep, part, proc, pid, base, []scPer{{"instance", total}, {"service", services}},
		fmt.Sprintf("%d %s, %d instances", services, watches, total))
	return proc, pid, true
}

// scEventCPU measures Caddy's CPU time per registry event of part, as for
// Kubernetes (see scKube.cpu): p.cpuEvents changes at p.cpuRate per
// second, change(i) moving an instance of one of the followed services to
// a new address and returning the service as the dump names it and the
// new address; one more change is awaited in the dump; less the idle CPU
// and the dump requests made to see it. Sources that poll (Eureka) take
// several changes in one answer: the figure is per change all the same.
func scEventCPU(t *testing.T, p scParams, rep *scReport, part string, proc *harness.Process, pid int, change func(ctx context.Context, i int) (string, netip.AddrPort, error)) {
	t.Helper()
	what := "Caddy CPU per registry event"
	scForceGC(t, proc)
	// Idle, a source still works now and then: Consul's blocking queries
	// return after at most a minute (and 1/16 more) without a change,
	// ZooKeeper's safety-net relist runs every minute. The idle CPU is
	// measured over such a minute, so that it counts their share.
	const idleWindow = 70 * time.Second
	idle, dump, settle := scIdleCost(t, proc, pid, idleWindow, "")
	rep.add(part, "Caddy CPU while nothing changes", scMillis(idle)+"/s",
		fmt.Sprintf("over %s, %d services followed (a share of a core: 1000 ms/s is one core)", idleWindow, p.nacosServices))
	// A CPU profile of the first seconds of the changes says where their
	// CPU goes (cpu-events-<part>.pprof, and its top).
	profile := filepath.Join(p.out, "cpu-events-"+part+".pprof")
	profiled := scProfileCPU(proc, profile, min(10, max(2, p.cpuEvents/max(1, p.cpuRate))))
	time.Sleep(100 * time.Millisecond) // the profile starts
	m0 := scReadMemCounts(t, proc)
	cpu0 := scCPU(t, pid)
	start := time.Now()
	sent, err := scPaced(t.Context(), p.phaseTimeout, p.cpuEvents, 8, p.cpuRate, func(ctx context.Context, _, i int) error {
		_, _, err := change(ctx, i)
		return err
	})
	if err := <-profiled; err != nil {
		t.Logf("scale: %s: CPU profile of the changes: %v", part, err)
	} else {
		scSaveTop(t, profile, 30)
	}
	if sent == 0 {
		rep.add(part, what, "—", fmt.Sprintf("no change went through: %v", err))
		return
	}
	service, dial, err := change(t.Context(), p.cpuEvents)
	if err != nil {
		t.Fatal(err)
	}
	sendTime := time.Since(start)
	polls0 := scDumps.Load()
	if _, ok := scAwaitDial(proc, part, service, dial.String(), time.Now().Add(p.phaseTimeout)); !ok {
		rep.add(part, what, "—", fmt.Sprintf("the last change did not arrive within %s", p.phaseTimeout))
		return
	}
	elapsed := time.Since(start)
	cpu := scCPU(t, pid) - cpu0
	m1 := scReadMemCounts(t, proc)
	polls := scDumps.Load() - polls0
	events := sent + 1
	overhead := time.Duration(float64(idle)*elapsed.Seconds()) + time.Duration(polls)*dump.cpu
	per := (cpu - overhead) / time.Duration(events)
	alloc := (m1.TotalAlloc - m0.TotalAlloc - float64(polls)*dump.alloc) / float64(events)
	note := fmt.Sprintf("%d changes in %s (%.0f/s), each moving an instance of one of the %d followed services: %s CPU, less %s idle (%s/s, after %s) and %d dump requests; %.1f KB allocated per change",
		events, scSeconds(elapsed), float64(events)/sendTime.Seconds(), p.nacosServices, scMillis(cpu), scMillis(overhead), scMillis(idle), settle, polls, alloc/1024)
	if sent < p.cpuEvents {
		note += fmt.Sprintf("; only %d of %d changes within the deadline", sent, p.cpuEvents)
	}
	rep.add(part, what, fmt.Sprintf("%d µs", per.Microseconds()), note)
}

// scRegistered reports how long writing every instance took, or why it
// stopped; false when not every instance was written.
func scRegistered(rep *scReport, p scParams, part, how string, start time.Time, done int, err error) bool {
	elapsed := time.Since(start)
	total := p.nacosServices * p.nacosInstances
	what := fmt.Sprintf("registration (%d services x %d instances)", p.nacosServices, p.nacosInstances)
	if done < total {
		rep.add(part, what, "—", fmt.Sprintf("stopped after %s (%v) with %d of %d instances registered",
			scSeconds(elapsed), cmp.Or[error](err, errors.New("deadline")), done, total))
		return false
	}
	rep.add(part, what, scSeconds(elapsed), fmt.Sprintf("%.0f instances/s, %s", float64(done)/elapsed.Seconds(), how))
	return true
}

// scRegistryAddr is the fake address of instance i (nothing listens there).
func scRegistryAddr(i int) netip.AddrPort {
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 170, byte(i >> 8), byte(i)}), scPort)
}

func scaleConsul(t *testing.T, p scParams, bin string, rep *scReport) {
	// Caddy holds one connection per blocking query: the agent's default
	// http_max_conns_per_client (200) would refuse most of them.
	// One connection per service and the test's own; the agent refuses a
	// limit within 20 of its file descriptor limit (20,000 here).
	maxConns := p.nacosServices + 500
	c := startAgent(t, &consulAgent{port: 18540, maxConns: maxConns})
	rep.note("Consul: a -dev agent of its own with limits { http_max_conns_per_client = %d } (default 200; Caddy holds one connection per blocking query)", maxConns)
	per := p.nacosInstances
	name := func(i int) string { return fmt.Sprintf("scale-%04d", i) }
	// The instances are written to the catalog, as Consul's Kubernetes
	// catalog sync writes them: services of one external node, each
	// instance with a passing check. Through the agent API, every
	// registration also syncs the agent's local state, whose cost grows
	// with the services it holds: 16 registrations a second at 10,000, which
	// kept the changes of the CPU measurement at 8 a second. What Caddy
	// reads, the health endpoint's answer, is the same either way.
	register := func(ctx context.Context, svc string, k int, addr netip.AddrPort) error {
		id, node := fmt.Sprintf("%s-%d", svc, k), "scale-registrar"
		_, err := c.api.Catalog().Register(&api.CatalogRegistration{
			Node: node, Address: "10.159.255.1", SkipNodeUpdate: true,
			Service: &api.AgentService{ID: id, Service: svc, Address: addr.Addr().String(), Port: int(addr.Port())},
			Check:   &api.AgentCheck{Node: node, CheckID: "service:" + id, Name: "alive", Status: api.HealthPassing, ServiceID: id},
		}, (&api.WriteOptions{}).WithContext(ctx))
		return err
	}
	start := time.Now()
	done, err := scPool(t.Context(), p.createTimeout, p.nacosServices*per, p.workers, func(ctx context.Context, _, i int) error {
		return register(ctx, name(i/per), i%per, scRegistryAddr(i))
	})
	if !scRegistered(rep, p, "consul", fmt.Sprintf("the catalog API, services of one external node, %d workers", p.workers), start, done, err) {
		return
	}
	proc, pid, ok := scServe(t, p, bin, rep, "consul", "blocking queries", c.app(), func(i int) (string, string) { return name(i), name(i) })
	if !ok {
		return
	}
	rep.add("consul", "HTTP connections from Caddy to the agent", strconv.Itoa(scConnsTo(t, pid, c.port)),
		fmt.Sprintf("ESTABLISHED TCP connections of the Caddy process to port %d, for %d blocking queries", c.port, p.nacosServices))
	// A change: an instance registers again at a new address.
	scEventCPU(t, p, rep, "consul", proc, pid, func(ctx context.Context, i int) (string, netip.AddrPort, error) {
		svc, a := name(i%p.nacosServices), netip.AddrPortFrom(scNextPatchAddr(), scPort)
		return svc, a, register(ctx, svc, i%per, a)
	})
}

func scaleEtcd(t *testing.T, p scParams, bin string, rep *scReport) {
	e := startEtcd(t)
	per := p.nacosInstances
	name := func(i int) string { return fmt.Sprintf("scale-%04d", i) }
	start := time.Now()
	done, err := scPool(t.Context(), p.createTimeout, p.nacosServices*per, p.workers, func(ctx context.Context, _, i int) error {
		_, err := e.cli.Put(ctx, fmt.Sprintf("%s/%d", name(i/per), i%per), fmt.Sprintf(`{"Op":0,"Addr":%q}`, scRegistryAddr(i)))
		return err
	})
	if !scRegistered(rep, p, "etcd", fmt.Sprintf("puts in etcd's naming format, %d workers", p.workers), start, done, err) {
		return
	}
	proc, pid, ok := scServe(t, p, bin, rep, "etcd", "watches", etcdApp(e.addr), func(i int) (string, string) { return name(i), name(i) + "/" })
	if !ok {
		return
	}
	// A change: an instance's key gets a new address.
	scEventCPU(t, p, rep, "etcd", proc, pid, func(ctx context.Context, i int) (string, netip.AddrPort, error) {
		svc, a := name(i%p.nacosServices), netip.AddrPortFrom(scNextPatchAddr(), scPort)
		_, err := e.cli.Put(ctx, fmt.Sprintf("%s/%d", svc, i%per), fmt.Sprintf(`{"Op":0,"Addr":%q}`, a))
		return svc + "/", a, err
	})
}

func scaleZooKeeper(t *testing.T, p scParams, bin string, rep *scReport) {
	s := startZooKeeper(t)
	per := p.nacosInstances
	name := func(i int) string { return fmt.Sprintf("scale-%04d", i) }
	for i := range p.nacosServices {
		s.create(t, "/services/"+name(i), nil, 0)
	}
	start := time.Now()
	done, err := scPool(t.Context(), p.createTimeout, p.nacosServices*per, p.workers, func(_ context.Context, _, i int) error {
		id := fmt.Sprintf("%d", i%per)
		_, err := s.conn.Create("/services/"+name(i/per)+"/"+id, curatorJSON(id, scRegistryAddr(i)), zk.FlagEphemeral, zk.WorldACL(zk.PermAll))
		return err
	})
	if !scRegistered(rep, p, "zookeeper", fmt.Sprintf("Curator's JSON as ephemeral nodes of one session, %d workers", p.workers), start, done, err) {
		return
	}
	proc, pid, ok := scServe(t, p, bin, rep, "zookeeper", "watched paths", zkApp(s.addr), func(i int) (string, string) { return name(i), "/services/" + name(i) })
	if !ok {
		return
	}
	// A change: an instance's node gets a new address.
	scEventCPU(t, p, rep, "zookeeper", proc, pid, func(_ context.Context, i int) (string, netip.AddrPort, error) {
		svc, id, a := name(i%p.nacosServices), fmt.Sprintf("%d", i%per), netip.AddrPortFrom(scNextPatchAddr(), scPort)
		_, err := s.conn.Set("/services/"+svc+"/"+id, curatorJSON(id, a), -1)
		return "/services/" + svc, a, err
	})
}

func scaleEureka(t *testing.T, p scParams, bin string, rep *scReport) {
	dir, err := os.MkdirTemp("", "caddy-discovery-scale-eureka-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = exec.Command("./stop-polaris.sh", dir).Run()
		_ = os.RemoveAll(dir)
	})
	if err := polarisScript("start-polaris.sh", dir, scEurekaNacosPort, fmt.Sprintf("EUREKA_PORT=%d", scEurekaPort)); err != nil {
		t.Fatal(err)
	}
	rep.note("Eureka: Polaris v1.18.1's Eureka API; instances registered as eureka-client does (POST /eureka/apps/<APP>, renewal 30 s, lease 90 s) and renewed every 20 s by the test")
	base := fmt.Sprintf("http://127.0.0.1:%d/eureka", scEurekaPort)
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = p.workers
	// Polaris creates a service in a second and more once it holds
	// thousands, both cores busy: a registration waits that long.
	hc := &http.Client{Transport: tr, Timeout: time.Minute}
	t.Cleanup(hc.CloseIdleConnections)
	per := p.nacosInstances
	name := func(i int) string { return fmt.Sprintf("SCALE-%04d", i) }
	start := time.Now()
	// register registers instance k of app at addr, or moves it there.
	register := func(ctx context.Context, app string, k int, addr netip.AddrPort) error {
		body, _ := json.Marshal(map[string]any{"instance": map[string]any{
			"instanceId": fmt.Sprintf("%s-%d", app, k), "hostName": addr.Addr().String(), "app": app,
			"ipAddr": addr.Addr().String(), "status": "UP",
			"port":       map[string]any{"$": addr.Port(), "@enabled": "true"},
			"securePort": map[string]any{"$": 443, "@enabled": "false"},
			"dataCenterInfo": map[string]any{
				"@class": "com.netflix.appinfo.InstanceInfo$DefaultDataCenterInfo", "name": "MyOwn",
			},
			"leaseInfo": map[string]any{"renewalIntervalInSecs": 30, "durationInSecs": 90},
		}})
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/apps/"+app, strings.NewReader(string(body)))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := hc.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNoContent {
			return fmt.Errorf("POST /apps/%s: HTTP %d", app, resp.StatusCode)
		}
		return nil
	}
	done, err := scPool(t.Context(), p.createTimeout, p.nacosServices*per, p.workers, func(ctx context.Context, _, i int) error {
		var err error
		for range 3 { // Polaris sometimes leaves a registration unanswered under the load
			if err = register(ctx, name(i/per), i%per, scRegistryAddr(i)); err == nil || ctx.Err() != nil {
				break
			}
		}
		return err
	})
	if !scRegistered(rep, p, "eureka", fmt.Sprintf("the Eureka API, %d workers", p.workers), start, done, err) {
		return
	}
	// Heartbeats, as each eureka-client sends them: Polaris drops an
	// instance 3 TTLs (30 s) after its last one.
	beat := func(ctx context.Context, _, i int) error {
		app := name(i / per)
		req, err := http.NewRequestWithContext(ctx, http.MethodPut, fmt.Sprintf("%s/apps/%s/%s-%d", base, app, app, i%per), nil)
		if err != nil {
			return err
		}
		resp, err := hc.Do(req)
		if err != nil {
			return nil // the next round renews it
		}
		resp.Body.Close()
		return nil
	}
	beating, stopBeating := context.WithCancel(context.Background())
	var beats sync.WaitGroup
	beats.Go(func() {
		for {
			round := time.Now()
			_, _ = scPool(beating, time.Minute, p.nacosServices*per, 8, beat)
			select {
			case <-beating.Done():
				return
			case <-time.After(20*time.Second - time.Since(round)):
			}
		}
	})
	t.Cleanup(func() { stopBeating(); beats.Wait() })
	// Eureka servers send every change of the last minutes in each delta
	// (Polaris: the last minute): right after 10,000 registrations each
	// of Caddy's polls would decode them all again. Start Caddy once the
	// registry has settled, as the other parts' servers have.
	settled := time.Now()
	for {
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, base+"/apps/delta", nil)
		req.Header.Set("Accept", "application/json")
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !strings.Contains(string(body), `"instanceId"`) {
			break
		}
		if time.Since(settled) > p.phaseTimeout {
			rep.add("eureka", "the registry's delta empties", "—", fmt.Sprintf("still not empty after %s", p.phaseTimeout))
			return
		}
		time.Sleep(time.Second)
	}
	rep.note("Eureka: Caddy started once the server's delta was empty, %s after the registrations", scSeconds(time.Since(settled)))
	apps := fmt.Sprintf(`"eureka": {"servers": {"default": {"urls": [%q], "refresh_interval": "1s"}}}`, base)
	proc, pid, ok := scServe(t, p, bin, rep, "eureka", "applications of one registry copy", apps, func(i int) (string, string) { return name(i), name(i) })
	if !ok {
		return
	}
	rep.add("eureka", "HTTP connections from Caddy to the server", strconv.Itoa(scConnsTo(t, pid, scEurekaPort)),
		fmt.Sprintf("ESTABLISHED TCP connections of the Caddy process to port %d, for %d applications (one poller of the whole registry)", scEurekaPort, p.nacosServices))
	// A change: an instance registers again at a new address.
	scEventCPU(t, p, rep, "eureka", proc, pid, func(ctx context.Context, i int) (string, netip.AddrPort, error) {
		app, a := name(i%p.nacosServices), netip.AddrPortFrom(scNextPatchAddr(), scPort)
		return app, a, register(ctx, app, i%per, a)
	})
}

// --- Caddy -------------------------------------------------------------------

// scRoute is a route for host with a round-robin reverse_proxy over source.
func scRoute(host string, source map[string]any) string {
	b, _ := json.Marshal(source)
	return fmt.Sprintf(`{"match": [{"host": [%q]}], "handle": [{"handler": "reverse_proxy", "load_balancing": {"selection_policy": {"policy": "round_robin"}}, "dynamic_upstreams": %s}]}`, host, b)
}

// scWriteConfig writes a Caddy config with the admin API at admin and one
// server with the routes, and returns its file.
func scWriteConfig(t *testing.T, admin string, routes []string, apps string) string {
	t.Helper()
	if apps != "" {
		apps = ", " + apps
	}
	cfg := fmt.Sprintf(`{
		"admin": {"listen": %q},
		"logging": {"logs": {"default": {"level": "INFO", "exclude": ["admin.api"], "writer": {"output": "stderr"}}}},
		"apps": {"http": {"servers": {"scale": {"listen": [%q], "automatic_https": {"disable": true}, "routes": [%s]}}}%s}
	}`, admin, freeAddr(t), strings.Join(routes, ",\n"), apps)
	file := filepath.Join(t.TempDir(), "caddy.json")
	if err := os.WriteFile(file, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return file
}

// scMem is one reading of a Caddy process's memory.
type scMem struct {
	rss, hwm, heap float64 // bytes: VmRSS, VmHWM, go_memstats_heap_inuse_bytes
	live           float64 // heap in use after a forced GC (baseline only)
}

// scBaseline starts Caddy with n routes over one static upstream each (what
// the routes cost without any source), reads its memory and stops it.
func scBaseline(t *testing.T, p scParams, bin string, n int, part string) scMem {
	t.Helper()
	routes := make([]string, n)
	for i := range routes {
		a := netip.AddrFrom4([4]byte{10, 170, byte(i >> 8), byte(i)})
		routes[i] = fmt.Sprintf(`{"match": [{"host": ["b%d.baseline"]}], "handle": [{"handler": "reverse_proxy", "upstreams": [{"dial": %q}]}]}`,
			i, netip.AddrPortFrom(a, scPort))
	}
	admin := freeAddr(t)
	proc := harness.StartProcess(t, bin, scWriteConfig(t, admin, routes, ""), admin)
	pid := scCaddyPid(t, proc)
	time.Sleep(5 * time.Second)
	m := scReadMem(t, proc, pid)
	if code, _, err := proc.Request(http.MethodGet, "/debug/pprof/heap?gc=1", ""); err != nil || code != http.StatusOK {
		t.Fatalf("GET /debug/pprof/heap: %d %v", code, err)
	}
	m.live = scReadMem(t, proc, pid).heap
	proc.Stop(t)
	fmt.Printf("scale: %s: baseline Caddy (%d routes over one static upstream each): VmRSS %s, heap in use %s, live %s\n",
		part, n, scMiB(m.rss), scMiB(m.heap), scMiB(m.live))
	return m
}

// scPer is a count to divide memory by.
type scPer struct {
	what string
	n    int
}

// scMemory reports a Caddy's memory, settled, in total, over the baseline
// and per unit: VmRSS and the heap in use as they are, and the heap in use
// after the garbage collection that the heap profile's ?gc=1 forces (the
// live heap). It saves the profile, and prints its top when the RSS per
// unit is over the target.
func scMemory(t *testing.T, p scParams, rep *scReport, part string, proc *harness.Process, pid int, base scMem, per []scPer, what string) {
	t.Helper()
	time.Sleep(10 * time.Second) // as a running Caddy would be a while after its start
	m := scReadMem(t, proc, pid)
	file := filepath.Join(p.out, "heap-"+part+".pprof")
	code, body, err := proc.Request(http.MethodGet, "/debug/pprof/heap?gc=1", "")
	if err != nil || code != http.StatusOK {
		t.Fatalf("GET /debug/pprof/heap: %d %v", code, err)
	}
	if err := os.WriteFile(file, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	live := scReadMem(t, proc, pid).heap
	rep.add(part, "Caddy VmRSS / heap in use / live heap", fmt.Sprintf("%s / %s / %s", scMiB(m.rss), scMiB(m.heap), scMiB(live)),
		fmt.Sprintf("%s; live heap: in use after a forced GC; peak RSS (VmHWM) %s; baseline Caddy with the same routes over static upstreams: %s / %s / %s",
			what, scMiB(m.hwm), scMiB(base.rss), scMiB(base.heap), scMiB(base.live)))
	over := false
	for i, u := range per {
		rss, heap := (m.rss-base.rss)/float64(u.n), (live-base.live)/float64(u.n)
		rep.add(part, "over the baseline, per "+u.what, fmt.Sprintf("%.0f B RSS, %.0f B live heap", rss, heap),
			fmt.Sprintf("%d %ss; all of the RSS, baseline included: %.0f B", u.n, u.what, m.rss/float64(u.n)))
		if i == 0 && rss > scTargetRSS {
			over = true
		}
	}
	var tops []byte
	for _, args := range [][]string{{"-top"}, {"-top", "-cum"}} {
		args = append(append([]string{"tool", "pprof"}, args...), "-sample_index=inuse_space", "-nodecount=30", harness.BuildCaddy(t), file)
		out, err := exec.Command("go", args...).CombinedOutput()
		if err != nil {
			t.Logf("go %s: %v\n%s", strings.Join(args, " "), err, out)
			return
		}
		tops = append(tops, out...)
	}
	top := filepath.Join(p.out, "heap-"+part+"-top.txt")
	_ = os.WriteFile(top, tops, 0o644)
	fmt.Printf("scale: %s: heap profile %s, top in %s\n", part, file, top)
	if over {
		fmt.Printf("scale: %s: RSS per %s over the target of %d B; heap profile (in use):\n%s\n", part, per[0].what, scTargetRSS, tops)
	}
}

// scReadMem reads VmRSS and VmHWM of the process and the heap in use from
// its /metrics.
func scReadMem(t *testing.T, proc *harness.Process, pid int) scMem {
	t.Helper()
	var m scMem
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) != 3 || f[2] != "kB" {
			continue
		}
		kb, _ := strconv.ParseFloat(f[1], 64)
		switch f[0] {
		case "VmRSS:":
			m.rss = kb * 1024
		case "VmHWM:":
			m.hwm = kb * 1024
		}
	}
	m.heap = scrapeMetrics(t, proc).must(t, "go_memstats_heap_inuse_bytes")
	return m
}

// scCaddyPid is the pid of the process listening on Caddy's admin address
// (StartProcess runs caddy itself, not a wrapper), as ss shows it.
func scCaddyPid(t *testing.T, proc *harness.Process) int {
	t.Helper()
	port := proc.Admin[strings.LastIndexByte(proc.Admin, ':')+1:]
	out, err := exec.Command("ss", "-Htlnp", "sport", "= :"+port).CombinedOutput()
	if err != nil {
		t.Fatalf("ss: %v\n%s", err, out)
	}
	s := string(out)
	i := strings.Index(s, "pid=")
	if i < 0 {
		t.Fatalf("no process listens on the admin port %s: %s", port, s)
	}
	j := strings.IndexByte(s[i:], ',')
	pid, err := strconv.Atoi(s[i+4 : i+j])
	if err != nil {
		t.Fatalf("reading the pid from %q: %v", s, err)
	}
	return pid
}

// scCPU is the CPU time the process used so far (utime+stime from
// /proc/<pid>/stat, in clock ticks of 10 ms).
func scCPU(t *testing.T, pid int) time.Duration {
	t.Helper()
	if _, err := os.Stat(fmt.Sprintf("/proc/%d/stat", pid)); err != nil {
		t.Fatal(err)
	}
	return scProcCPU(pid)
}

// scSchedCPU is the CPU time of the process's threads from their schedstat,
// in nanoseconds: finer than scCPU's ticks (threads that ended are missing;
// Go's rarely end).
func scSchedCPU(pid int) time.Duration {
	dirs, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/schedstat", pid))
	var sum time.Duration
	for _, d := range dirs {
		b, err := os.ReadFile(d)
		if err != nil {
			continue
		}
		if f := strings.Fields(string(b)); len(f) > 0 {
			ns, _ := strconv.ParseInt(f[0], 10, 64)
			sum += time.Duration(ns)
		}
	}
	return sum
}

// scConnsTo counts the process's ESTABLISHED TCP connections to port: its
// socket inodes (/proc/<pid>/fd) matched against the namespace's
// /proc/<pid>/net/tcp{,6}.
func scConnsTo(t *testing.T, pid, port int) int {
	t.Helper()
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatal(err)
	}
	inodes := map[string]bool{}
	for _, fd := range fds {
		l, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name()))
		if err == nil && strings.HasPrefix(l, "socket:[") {
			inodes[strings.TrimSuffix(strings.TrimPrefix(l, "socket:["), "]")] = true
		}
	}
	n := 0
	for _, file := range []string{"tcp", "tcp6"} {
		f, err := os.Open(fmt.Sprintf("/proc/%d/net/%s", pid, file))
		if err != nil {
			continue
		}
		s := bufio.NewScanner(f)
		for s.Scan() {
			fields := strings.Fields(s.Text())
			if len(fields) > 9 && fields[3] == "01" && strings.HasSuffix(fields[2], fmt.Sprintf(":%04X", port)) && inodes[fields[9]] {
				n++
			}
		}
		f.Close()
	}
	return n
}

// scDumps counts the admin dump requests the benchmark made.
var scDumps atomic.Int64

func scDump(proc *harness.Process) ([]upstreams.DumpEntry, error) {
	scDumps.Add(1)
	code, body, err := proc.Request(http.MethodGet, "/discovery/upstreams", "")
	if err != nil {
		return nil, err
	}
	if code != http.StatusOK {
		return nil, fmt.Errorf("GET /discovery/upstreams: status %d: %s", code, body)
	}
	var entries []upstreams.DumpEntry
	if err := json.Unmarshal([]byte(body), &entries); err != nil {
		return nil, fmt.Errorf("reading the admin dump: %w", err)
	}
	return entries, nil
}

// scAwaitServed polls the dump until every wanted service of the source
// lists its number of upstreams without an error, for at most timeout; it
// returns how many did at the last poll.
func scAwaitServed(proc *harness.Process, source string, want map[string]int, timeout time.Duration) (int, bool) {
	deadline := time.Now().Add(timeout)
	best := 0
	for {
		entries, err := scDump(proc)
		served := 0
		if err == nil {
			for _, e := range entries {
				if e.Source == source && want[e.Service] > 0 && len(e.Upstreams) == want[e.Service] && e.Error == "" {
					served++
				}
			}
		}
		best = served
		if served == len(want) {
			return served, true
		}
		if time.Now().After(deadline) {
			fmt.Printf("scale: %s: %d of %d services served at the deadline (last error: %v); some that are not:\n", source, best, len(want), err)
			shown := 0
			for _, e := range entries {
				if e.Source == source && (want[e.Service] == 0 || len(e.Upstreams) != want[e.Service] || e.Error != "") && shown < 5 {
					fmt.Printf("scale:   %s: %d upstreams, error %q\n", e.Service, len(e.Upstreams), e.Error)
					shown++
				}
			}
			return best, false
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// scAwaitDial polls the dump until the service lists dial, and returns the
// time its snapshot was made.
func scAwaitDial(proc *harness.Process, source, service, dial string, deadline time.Time) (time.Time, bool) {
	for time.Now().Before(deadline) {
		entries, err := scDump(proc)
		if err == nil {
			for _, e := range entries {
				if e.Source == source && e.Service == service && slices.ContainsFunc(e.Upstreams, func(u upstreams.DumpTarget) bool { return u.Dial == dial }) {
					return e.Updated, true
				}
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	return time.Time{}, false
}

func scSaveLog(t *testing.T, p scParams, proc *harness.Process, name string) {
	if err := os.WriteFile(filepath.Join(p.out, name), []byte(proc.Output.String()), 0o644); err != nil {
		t.Error(err)
	}
}

// --- figures -----------------------------------------------------------------

// scMedian is the median of xs (not empty); xs is sorted in place.
func scMedian(xs []float64) float64 {
	slices.Sort(xs)
	if len(xs)%2 == 1 {
		return xs[len(xs)/2]
	}
	return (xs[len(xs)/2-1] + xs[len(xs)/2]) / 2
}

// scPercentile is the nearest-rank percentile of sorted durations.
func scPercentile(sorted []time.Duration, q float64) time.Duration {
	i := int(float64(len(sorted))*q+0.999999) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

func scSeconds(d time.Duration) string { return fmt.Sprintf("%.1f s", d.Seconds()) }
func scMillis(d time.Duration) string {
	return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond))
}
func scMiB(b float64) string { return fmt.Sprintf("%.1f MiB", b/(1<<20)) }

func scEnvInt(t *testing.T, name string, def int) int {
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		t.Fatalf("%s %q: want a number, 0 or more", name, s)
	}
	return n
}

func scEnvDuration(t *testing.T, name string, def time.Duration) time.Duration {
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		t.Fatalf("%s %q: want a duration such as 5m", name, s)
	}
	return d
}

// scMachineNote describes the machine and the servers.
func scMachineNote() string {
	return machineNote() + "; kube-apiserver v1.34.4 and etcd, Polaris v1.18.1, all on the same machine as Caddy and the test (nothing pinned)"
}
