//go:build integration

package integration

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"github.com/caddy-discovery/caddy-discovery/integration/harness"
)

const caddyPort = 18080

// k8sProxy is a reverse_proxy handler with round-robin selection (so that a
// spread of requests reaches every upstream) over a k8s dynamic source.
func k8sProxy(source map[string]any) string {
	source["source"] = "k8s"
	b, _ := json.Marshal(source)
	return fmt.Sprintf(`{"handler": "reverse_proxy", "load_balancing": {"selection_policy": {"policy": "round_robin"}}, "dynamic_upstreams": %s}`, b)
}

func webService(ns string) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web"},
		Spec: corev1.ServiceSpec{
			Selector: map[string]string{"app": "web"},
			Ports:    []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromString("web")}},
		},
	}
}

var appWeb = map[string]string{"app": "web"}

// webSetup creates namespace ns with a Node "<ns>-node" (zone z1) and the
// Service web selecting app=web, and a test network for its Pods' backends.
func webSetup(t *testing.T, ns string) (*harness.Kube, *harness.Netns) {
	t.Helper()
	k := sharedKube(t)
	net := harness.NewNetns(t)
	k.Namespace(t, ns)
	k.Node(t, ns+"-node", "z1", net.Gateway, netip.Addr{})
	k.Service(t, webService(ns))
	return k, net
}

// readyPod starts a backend answering name on a new address of net, and a
// ready Pod of that name and address on the namespace's node.
func readyPod(t *testing.T, k *harness.Kube, net *harness.Netns, ns, name string) netip.Addr {
	t.Helper()
	ip := net.AddAddr(t)
	net.Backend(t, name, ip, 8080)
	k.Pod(t, ns, name, ns+"-node", appWeb, ip, true)
	return ip
}

// grantDiscovery gives subject the namespaced Role this module needs in ns:
// get, list and watch on services and endpointslices.
func grantDiscovery(t *testing.T, k *harness.Kube, ns string, subject rbacv1.Subject) {
	t.Helper()
	role := &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "caddy"}, Rules: []rbacv1.PolicyRule{
		{APIGroups: []string{""}, Resources: []string{"services"}, Verbs: []string{"get", "list", "watch"}},
		{APIGroups: []string{"discovery.k8s.io"}, Resources: []string{"endpointslices"}, Verbs: []string{"get", "list", "watch"}},
	}}
	if _, err := k.Client.RbacV1().Roles(ns).Create(t.Context(), role, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	binding := &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "caddy"},
		RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: "caddy"},
		Subjects: []rbacv1.Subject{subject}}
	if _, err := k.Client.RbacV1().RoleBindings(ns).Create(t.Context(), binding, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// TestKubernetesEndpointsFollowPods: requests reach exactly the ready pods,
// through scale up, readiness flips and scale down.
func TestKubernetesEndpointsFollowPods(t *testing.T) {
	k, net := webSetup(t, "follow")
	readyPod(t, k, net, "follow", "pod0")
	readyPod(t, k, net, "follow", "pod1")
	ip2 := net.AddAddr(t)
	net.Backend(t, "pod2", ip2, 8080)

	c := harness.StartCaddy(t, caddyPort, k8sProxy(map[string]any{"service": "follow/web:http", "kubeconfig": filepath.Join(k.Dir, "admin.kubeconfig")}), "")
	c.ExpectBackends(t, 10*time.Second, "pod0", "pod1")

	k.Pod(t, "follow", "pod2", "follow-node", appWeb, ip2, false)
	// Once the EndpointSlice lists pod2 (not ready), Caddy must still leave it out.
	harness.Eventually(t, 5*time.Second, func() error {
		list, err := k.Client.DiscoveryV1().EndpointSlices("follow").List(t.Context(), metav1.ListOptions{})
		if err != nil {
			return err
		}
		for _, es := range list.Items {
			for _, ep := range es.Endpoints {
				if slices.Contains(ep.Addresses, ip2.String()) && ep.Conditions.Ready != nil && !*ep.Conditions.Ready {
					return nil
				}
			}
		}
		return fmt.Errorf("pod2 (%s) is not in the EndpointSlices yet", ip2)
	})
	if got := c.Spread(30); got["pod2"] != 0 || got["pod0"]+got["pod1"] != 30 {
		t.Fatalf("an unready pod must get no traffic: %v", got)
	}
	k.SetReady(t, "follow", "pod2", true)
	c.ExpectBackends(t, 5*time.Second, "pod0", "pod1", "pod2")
	k.SetReady(t, "follow", "pod1", false)
	c.ExpectBackends(t, 5*time.Second, "pod0", "pod2")
	k.DeletePod(t, "follow", "pod0")
	c.ExpectBackends(t, 5*time.Second, "pod2")
	k.SetReady(t, "follow", "pod2", false)
	harness.Eventually(t, 5*time.Second, func() error {
		_, err := c.Get("")
		if err == nil {
			return fmt.Errorf("with no ready pod, requests must fail")
		}
		return nil
	})
}

// TestKubernetesReferenceForms: every reference and port form reaches the
// same backend.
func TestKubernetesReferenceForms(t *testing.T) {
	k := sharedKube(t)
	net := harness.NewNetns(t)
	k.Namespace(t, "forms")
	k.Node(t, "forms-node", "z1", net.Gateway, netip.Addr{})
	svc := webService("forms")
	svc.Spec.Ports = append(svc.Spec.Ports, corev1.ServicePort{Name: "metrics", Port: 9090, TargetPort: intstr.FromInt32(9100)})
	k.Service(t, svc)
	single := webService("forms")
	single.Name = "single"
	k.Service(t, single)
	ip := net.AddAddr(t)
	net.Backend(t, "web", ip, 8080)
	net.Backend(t, "metrics", ip, 9100)
	k.Pod(t, "forms", "pod", "forms-node", appWeb, ip, true)

	kubeconfig := filepath.Join(k.Dir, "admin.kubeconfig")
	apps := fmt.Sprintf(`"k8s": {"clusters": {"main": {"kubeconfig": %q}}}`, kubeconfig)
	var c *harness.Caddy
	for _, tc := range []struct {
		source map[string]any
		want   string
	}{
		{map[string]any{"service": "forms/web:http"}, "web"},
		{map[string]any{"service": "forms/web:80"}, "web"},
		{map[string]any{"service": "forms/web:web"}, "web"},      // targetPort name
		{map[string]any{"service": "forms/web:9100"}, "metrics"}, // targetPort number
		{map[string]any{"service": "forms/web", "port": 9090}, "metrics"},
		{map[string]any{"service": "forms/web", "port": "metrics"}, "metrics"},
		{map[string]any{"service": "forms/single"}, "web"},
		{map[string]any{"service": "web.forms:http"}, "web"},
		{map[string]any{"service": "web.forms.svc:http"}, "web"},
		{map[string]any{"service": "web.forms.svc.cluster.local:http"}, "web"},
		{map[string]any{"service": "single.forms.svc.cluster.local"}, "web"},
		{map[string]any{"service": "main/forms/web:http"}, "web"},
		{map[string]any{"service": "forms/web:metrics", "cluster": "main"}, "metrics"},
	} {
		src := tc.source
		if !strings.Contains(fmt.Sprint(src), "main") {
			src["kubeconfig"] = kubeconfig
		}
		h := k8sProxy(src)
		if c == nil {
			c = harness.StartCaddy(t, caddyPort, h, apps)
		} else {
			c.Load(h, apps)
		}
		c.ExpectBackends(t, 10*time.Second, tc.want)
	}
}

// TestKubernetesTargetModes: cluster_ip dials the Service's virtual IP and
// node_port every node's address (internal or external) with the nodePort.
// The test plays kube-proxy: those addresses live in the test namespace.
func TestKubernetesTargetModes(t *testing.T) {
	k := sharedKube(t)
	net := harness.NewNetns(t)
	k.Namespace(t, "modes")
	n1, n1ext, n2 := net.AddAddr(t), net.AddAddr(t), net.AddAddr(t)
	k.Node(t, "modes-n1", "z1", n1, n1ext)
	k.Node(t, "modes-n2", "z2", n2, netip.Addr{})
	svc := webService("modes")
	svc.Spec.Type = corev1.ServiceTypeNodePort
	svc.Spec.ClusterIP = "10.96.77.7"
	svc.Spec.Ports[0].NodePort = 30777
	k.Service(t, svc)
	pod := net.AddAddr(t)
	k.Pod(t, "modes", "pod", "modes-n1", appWeb, pod, true)

	// The cluster IP is routed to the test namespace, as kube-proxy would.
	vip := netip.MustParseAddr("10.96.77.7")
	net.AddHostRoute(t, vip)
	net.Backend(t, "via-cluster-ip", vip, 80)
	net.Backend(t, "node1", n1, 30777)
	net.Backend(t, "node1-external", n1ext, 30777)
	net.Backend(t, "node2", n2, 30777)
	net.Backend(t, "pod", pod, 8080)

	kubeconfig := filepath.Join(k.Dir, "admin.kubeconfig")
	c := harness.StartCaddy(t, caddyPort, k8sProxy(map[string]any{"service": "modes/web:http", "kubeconfig": kubeconfig}), "")
	c.ExpectBackends(t, 10*time.Second, "pod")
	c.Load(k8sProxy(map[string]any{"service": "modes/web:http", "kubeconfig": kubeconfig, "target": "cluster_ip"}), "")
	c.ExpectBackends(t, 10*time.Second, "via-cluster-ip")
	c.Load(k8sProxy(map[string]any{"service": "modes/web:http", "kubeconfig": kubeconfig, "target": "node_port"}), "")
	c.ExpectBackends(t, 10*time.Second, "node1", "node2")
	c.Load(k8sProxy(map[string]any{"service": "modes/web:http", "kubeconfig": kubeconfig, "target": "node_port", "node_address": "external"}), "")
	c.ExpectBackends(t, 10*time.Second, "node1-external")

	// Cordoning a node takes it out of node_port, live: no reload.
	c.Load(k8sProxy(map[string]any{"service": "modes/web:http", "kubeconfig": kubeconfig, "target": "node_port"}), "")
	c.ExpectBackends(t, 10*time.Second, "node1", "node2")
	node, err := k.Client.CoreV1().Nodes().Get(t.Context(), "modes-n2", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	node.Spec.Unschedulable = true
	if _, err := k.Client.CoreV1().Nodes().Update(t.Context(), node, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	c.ExpectBackends(t, 10*time.Second, "node1")
}

// TestKubernetesZoneAndTerminating: prefer_zone keeps traffic in its zone
// while the zone has ready pods; fallback_to_terminating uses terminating but
// serving pods when nothing is ready.
func TestKubernetesZoneAndTerminating(t *testing.T) {
	k := sharedKube(t)
	net := harness.NewNetns(t)
	k.Namespace(t, "zones")
	k.Node(t, "zones-a", "zone-a", net.Gateway, netip.Addr{})
	k.Node(t, "zones-b", "zone-b", net.Gateway, netip.Addr{})
	k.Service(t, webService("zones"))
	a, b := net.AddAddr(t), net.AddAddr(t)
	net.Backend(t, "in-a", a, 8080)
	net.Backend(t, "in-b", b, 8080)
	k.Pod(t, "zones", "pa", "zones-a", appWeb, a, true)
	k.Pod(t, "zones", "pb", "zones-b", appWeb, b, true)

	kubeconfig := filepath.Join(k.Dir, "admin.kubeconfig")
	c := harness.StartCaddy(t, caddyPort, k8sProxy(map[string]any{
		"service": "zones/web:http", "kubeconfig": kubeconfig, "prefer_zone": "zone-a", "fallback_to_terminating": true}), "")
	c.ExpectBackends(t, 10*time.Second, "in-a")
	k.SetReady(t, "zones", "pa", false)
	c.ExpectBackends(t, 5*time.Second, "in-b")

	// Deleting a pod without a kubelet leaves it terminating; while it was
	// ready it keeps serving=true: the fallback uses it.
	k.SetReady(t, "zones", "pa", true)
	c.ExpectBackends(t, 5*time.Second, "in-a")
	if err := k.Client.CoreV1().Pods("zones").Delete(t.Context(), "pb", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := k.Client.CoreV1().Pods("zones").Delete(t.Context(), "pa", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	c.ExpectBackends(t, 5*time.Second, "in-a", "in-b")
}

// TestKubernetesMultiCluster: two real control planes; references with a
// cluster name go to that cluster, others to "default".
func TestKubernetesMultiCluster(t *testing.T) {
	k := sharedKube(t)
	east, err := harness.StartKube(filepath.Join(t.TempDir(), "east"), 16444, 23800)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = east.Stop() })
	net := harness.NewNetns(t)
	for name, kc := range map[string]*harness.Kube{"main": k, "east": east} {
		kc.Namespace(t, "multi")
		kc.Node(t, "multi-node", "z1", net.Gateway, netip.Addr{})
		kc.Service(t, webService("multi"))
		ip := net.AddAddr(t)
		net.Backend(t, name, ip, 8080)
		kc.Pod(t, "multi", "pod", "multi-node", appWeb, ip, true)
	}
	apps := fmt.Sprintf(`"k8s": {"clusters": {
		"default": {"server": %q, "token": %q, "ca_file": %q},
		"east": {"server": %q, "token_file": %q, "ca_file": %q}}}`,
		k.Server, k.AdminToken, k.CAFile, east.Server, filepath.Join(east.Dir, "admin.token"), east.CAFile)
	c := harness.StartCaddy(t, caddyPort, k8sProxy(map[string]any{"service": "multi/web:http"}), apps)
	c.ExpectBackends(t, 10*time.Second, "main")
	c.Load(k8sProxy(map[string]any{"service": "east/multi/web:http"}), apps)
	c.ExpectBackends(t, 10*time.Second, "east")
}

// TestKubernetesRBAC: a restricted user first gets a 403 naming the user,
// verb, resource, namespace and the rule to add, logged once; once the Role
// exists, it works without a reload. A bad token gets the 401 message.
func TestKubernetesRBAC(t *testing.T) {
	k, net := webSetup(t, "rbac")
	readyPod(t, k, net, "rbac", "pod")

	logFile := filepath.Join(t.TempDir(), "caddy.log")
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte("not-a-valid-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	src := map[string]any{"service": "rbac/web:http", "server": k.Server, "token_file": tokenFile, "ca_file": k.CAFile}
	c := harness.StartCaddyLogged(t, caddyPort, k8sProxy(src), "", logFile)
	harness.Eventually(t, 10*time.Second, func() error {
		_, err := c.Get("")
		if err == nil || !strings.Contains(harness.ReadFile(logFile), "401 Unauthorized") {
			return fmt.Errorf("want a 401 explanation in the log; request error: %v", err)
		}
		return nil
	})
	log := harness.ReadFile(logFile)
	if !strings.Contains(log, `the API server rejected the credentials (401 Unauthorized)`) || strings.Contains(log, "not-a-valid-token") {
		t.Fatalf("401 log must explain and never show the token:\n%s", log)
	}

	// The file now holds a valid token of a user without permissions:
	// client-go re-reads it after the 401, and the 403 is explained.
	if err := os.WriteFile(tokenFile, []byte(k.RestrictedToken), 0o600); err != nil {
		t.Fatal(err)
	}
	want403 := `user "restricted" may not list endpointslices.discovery.k8s.io in namespace "rbac" (403 Forbidden); add to a Role in namespace "rbac" bound to restricted the rule {apiGroups: ["discovery.k8s.io"], resources: ["endpointslices"], verbs: ["get", "list", "watch"]}`
	harness.Eventually(t, 40*time.Second, func() error {
		// the log is JSON: compare with its quotes unescaped
		if log := strings.ReplaceAll(harness.ReadFile(logFile), `\"`, `"`); !strings.Contains(log, want403) {
			return fmt.Errorf("want the 403 explanation %q in the log:\n%s", want403, log)
		}
		return nil
	})
	_, err := c.Get("")
	if err == nil {
		t.Fatal("requests must fail without permissions")
	}
	time.Sleep(5 * time.Second) // the reflector retries meanwhile
	if n := strings.Count(harness.ReadFile(logFile), "may not list endpointslices"); n != 1 {
		t.Errorf("the 403 must be logged once, not on every retry: %d times", n)
	}

	// Least privilege: a namespaced Role is enough.
	grantDiscovery(t, k, "rbac", rbacv1.Subject{Kind: "User", APIGroup: "rbac.authorization.k8s.io", Name: "restricted"})
	c.ExpectBackends(t, 60*time.Second, "pod")
}

// TestKubernetesReloadKeepsOneWatch: reloads share the running watch (one
// WATCH on the API server, whatever the number of reloads and sites), and
// stopping Caddy ends it and leaves no goroutine behind.
func TestKubernetesReloadKeepsOneWatch(t *testing.T) {
	k, net := webSetup(t, "reload")
	readyPod(t, k, net, "reload", "web")
	watches := func() float64 {
		n, err := k.Metric("apiserver_longrunning_requests", `resource="endpointslices"`, `scope="namespace"`, `verb="WATCH"`)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := watches(); n != 0 {
		t.Fatalf("%v namespaced EndpointSlice watches before Caddy starts, want 0", n)
	}

	// Caddy's own process-wide goroutines (certificate cache and the like)
	// start with its first config; the baseline is taken after that.
	warm := harness.StartCaddy(t, caddyPort, `{"handler": "static_response", "body": "warm"}`, "")
	warm.Stop()
	ignore := goleak.IgnoreCurrent()

	kubeconfig := filepath.Join(k.Dir, "admin.kubeconfig")
	h := k8sProxy(map[string]any{"service": "reload/web:http", "kubeconfig": kubeconfig})
	c := harness.StartCaddy(t, caddyPort, h, "")
	c.ExpectBackends(t, 10*time.Second, "web")
	for i := range 5 {
		// the same Service, referenced once and then twice
		hs := h
		if i%2 == 1 {
			hs = fmt.Sprintf(`{"handler": "subroute", "routes": [{"handle": [%s]}, {"handle": [%s]}]}`, h,
				k8sProxy(map[string]any{"service": "web.reload.svc.cluster.local:http", "kubeconfig": kubeconfig}))
		}
		c.Load(hs, "")
		c.ExpectBackends(t, 5*time.Second, "web")
	}
	if !harness.WaitFor(5*time.Second, func() bool { return watches() == 1 }) {
		t.Fatalf("%v namespaced EndpointSlice watches after 5 reloads, want 1", watches())
	}
	c.Stop()
	if !harness.WaitFor(10*time.Second, func() bool { return watches() == 0 }) {
		t.Fatalf("%v EndpointSlice watches after Caddy stopped, want 0", watches())
	}
	goleak.VerifyNone(t, ignore,
		goleak.IgnoreTopFunction("k8s.io/klog/v2.(*flushDaemon).run.func1"),
		// reverse_proxy's own timer that forgets dynamic hosts after 5 minutes
		goleak.IgnoreAnyFunction("github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy.(*Upstream).fillDynamicHost.func1.1"),
		// Caddy's storage clean-up lock, refreshed by certmagic
		goleak.IgnoreAnyFunction("github.com/caddyserver/certmagic.keepLockfileFresh"),
		goleak.IgnoreTopFunction("internal/poll.runtime_pollWait"), // test backends, still listening
		goleak.IgnoreTopFunction("net/http.(*persistConn).readLoop"),
		goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop"))
}

// TestKubernetesPropagationLatency measures, against the real API server,
// the time from an EndpointSlice update returning to Caddy proxying to the
// new endpoint, over 50 updates (PROPAGATION_CHANGES). It reports; it does
// not judge (machines
// are noisy): see the README's performance section.
func TestKubernetesPropagationLatency(t *testing.T) {
	k := sharedKube(t)
	net := harness.NewNetns(t)
	k.Namespace(t, "latency")
	svc := webService("latency")
	svc.Spec.Selector = nil // endpoints are managed by the test
	k.Service(t, svc)
	a, b := net.AddAddr(t), net.AddAddr(t)
	net.Backend(t, "a", a, 8080)
	net.Backend(t, "b", b, 8080)
	es := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: "latency", Name: "web-manual", Labels: map[string]string{discoveryv1.LabelServiceName: "web"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To[int32](8080)}},
		Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{a.String()}}},
	}
	es, err := k.Client.DiscoveryV1().EndpointSlices("latency").Create(t.Context(), es, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	c := harness.StartCaddy(t, caddyPort, k8sProxy(map[string]any{"service": "latency/web:http", "kubeconfig": filepath.Join(k.Dir, "admin.kubeconfig")}), "")
	c.ExpectBackends(t, 10*time.Second, "a")

	updates := propagationChanges(t, 50)
	var lat []time.Duration
	names := map[netip.Addr]string{a: "a", b: "b"}
	for i := range updates {
		next := a
		if i%2 == 0 {
			next = b
		}
		es.Endpoints[0].Addresses = []string{next.String()}
		es, err = k.Client.DiscoveryV1().EndpointSlices("latency").Update(t.Context(), es, metav1.UpdateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		for {
			if got, _ := c.Get(""); got == names[next] {
				break
			}
			if time.Since(start) > 5*time.Second {
				t.Fatalf("update %d not visible after 5s", i)
			}
		}
		lat = append(lat, time.Since(start))
	}
	slices.Sort(lat)
	t.Logf("propagation over %d EndpointSlice updates (update returned -> proxied to the new endpoint): p50 %v, p99 %v, max %v",
		updates, lat[updates/2], lat[updates*99/100], lat[updates-1])
}

// TestKubernetesExplainsMissingServiceAndPortAndIPv6: a missing Service
// lists the namespace's Services, a missing port lists the Service's ports,
// and IPv6 endpoints are proxied to.
func TestKubernetesExplainsMissingServiceAndPortAndIPv6(t *testing.T) {
	k := sharedKube(t)
	net := harness.NewNetns(t)
	k.Namespace(t, "explain")
	svc := webService("explain")
	svc.Spec.Selector = nil
	k.Service(t, svc)
	v6 := net.AddAddr6(t)
	net.Backend(t, "v6", v6, 8080)
	es := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: "explain", Name: "web-v6", Labels: map[string]string{discoveryv1.LabelServiceName: "web"}},
		AddressType: discoveryv1.AddressTypeIPv6,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To[int32](8080)}},
		Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{v6.String()}}},
	}
	if _, err := k.Client.DiscoveryV1().EndpointSlices("explain").Create(t.Context(), es, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	kubeconfig := filepath.Join(k.Dir, "admin.kubeconfig")
	c := harness.StartCaddy(t, caddyPort, k8sProxy(map[string]any{"service": "explain/web:http", "kubeconfig": kubeconfig}), "")
	c.ExpectBackends(t, 10*time.Second, "v6")

	// reverse_proxy has no fallback upstreams here, so the source's error
	// shows in the log only; GetUpstreams' message is checked through it.
	logFile := filepath.Join(t.TempDir(), "caddy.log")
	c.LogFile = logFile
	for ref, want := range map[string]string{
		"explain/web:grpc": `service explain/web has no port "grpc"; ports: http (80->web/TCP)`,
		"explain/api:http": `service explain/api not found (services in namespace "explain": [explain/web])`,
	} {
		c.Load(k8sProxy(map[string]any{"service": ref, "kubeconfig": kubeconfig}), "")
		harness.Eventually(t, 10*time.Second, func() error {
			if _, err := c.Get(""); err == nil {
				return fmt.Errorf("%s: want requests to fail", ref)
			}
			if log := strings.ReplaceAll(harness.ReadFile(logFile), `\"`, `"`); !strings.Contains(log, want) {
				return fmt.Errorf("%s: want %q in the log", ref, want)
			}
			return nil
		})
	}
}

// TestKubernetesTokenRotationAcrossRestart: Caddy authenticates with a
// service account token from token_file. The file is rotated to a new token
// and the old one revoked; the API server then restarts, which breaks every
// watch. Meanwhile requests keep reaching the last known pods, and afterwards
// the watches resume with the new token and follow changes again.
func TestKubernetesTokenRotationAcrossRestart(t *testing.T) {
	k, net := webSetup(t, "rotate")
	readyPod(t, k, net, "rotate", "pod0")
	ip1 := net.AddAddr(t)
	net.Backend(t, "pod1", ip1, 8080)

	// A service account with a namespaced Role, and two tokens bound to two
	// Secrets: deleting a Secret revokes its token.
	cs := k.Client
	if _, err := cs.CoreV1().ServiceAccounts("rotate").Create(t.Context(), &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "caddy"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	grantDiscovery(t, k, "rotate", rbacv1.Subject{Kind: "ServiceAccount", Name: "caddy", Namespace: "rotate"})
	mint := func(secret string) string {
		s, err := cs.CoreV1().Secrets("rotate").Create(t.Context(), &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: secret}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		tr, err := cs.CoreV1().ServiceAccounts("rotate").CreateToken(t.Context(), "caddy", &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{
			BoundObjectRef: &authenticationv1.BoundObjectReference{Kind: "Secret", APIVersion: "v1", Name: secret, UID: s.UID},
		}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return tr.Status.Token
	}
	oldToken, newToken := mint("old"), mint("new")

	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte(oldToken), 0o600); err != nil {
		t.Fatal(err)
	}
	c := harness.StartCaddy(t, caddyPort, k8sProxy(map[string]any{
		"service": "rotate/web:http", "server": k.Server, "token_file": tokenFile, "ca_file": k.CAFile}), "")
	c.ExpectBackends(t, 10*time.Second, "pod0")

	// Rotate: the kubelet would replace the projected token file atomically.
	tmp := tokenFile + ".new"
	if err := os.WriteFile(tmp, []byte(newToken), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, tokenFile); err != nil {
		t.Fatal(err)
	}
	if err := cs.CoreV1().Secrets("rotate").Delete(t.Context(), "old", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}

	// Restart the control plane; requests keep going to the last known pod.
	if err := k.Stop(); err != nil {
		t.Fatal(err)
	}
	if got := c.Spread(20); got["pod0"] != 20 {
		t.Fatalf("while the API server is down, requests must keep reaching the last known pod: %v", got)
	}
	if _, err := harness.StartKube(k.Dir, 16443, 23790); err != nil {
		t.Fatal(err)
	}
	k.Pod(t, "rotate", "pod1", "rotate-node", appWeb, ip1, true)
	c.ExpectBackends(t, 60*time.Second, "pod0", "pod1")
}
