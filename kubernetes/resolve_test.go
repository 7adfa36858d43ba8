package kubernetes

import (
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"github.com/caddy-discovery/caddy-discovery/upstreams"
)

func testService() *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web"},
		Spec: corev1.ServiceSpec{
			Type:      corev1.ServiceTypeNodePort,
			ClusterIP: "10.96.0.10",
			Ports: []corev1.ServicePort{
				{Name: "http", Port: 80, TargetPort: intstr.FromString("web"), NodePort: 30080, Protocol: corev1.ProtocolTCP},
				{Name: "metrics", Port: 9090, TargetPort: intstr.FromInt32(9100), Protocol: corev1.ProtocolTCP},
			},
		},
	}
}

type ep struct {
	addr                        string
	ready, serving, terminating *bool
	zone, node                  string
}

func slice(addrType discoveryv1.AddressType, port int32, eps ...ep) *discoveryv1.EndpointSlice {
	es := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: "shop", Name: "web-x", Labels: map[string]string{discoveryv1.LabelServiceName: "web"}},
		AddressType: addrType,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To(port), Protocol: ptr.To(corev1.ProtocolTCP)}},
	}
	for _, e := range eps {
		x := discoveryv1.Endpoint{Addresses: []string{e.addr}, Conditions: discoveryv1.EndpointConditions{Ready: e.ready, Serving: e.serving, Terminating: e.terminating}}
		if e.zone != "" {
			x.Zone = ptr.To(e.zone)
		}
		if e.node != "" {
			x.NodeName = ptr.To(e.node)
		}
		es.Endpoints = append(es.Endpoints, x)
	}
	return es
}

// cached is svc as the informers keep it.
func cached(svc *corev1.Service) *cachedService {
	obj, _ := slimService(svc)
	return obj.(*cachedService)
}

// cachedSlices are EndpointSlices as the informers keep them.
func cachedSlices(eps []*discoveryv1.EndpointSlice) []*cachedSlice {
	out := make([]*cachedSlice, len(eps))
	for i, es := range eps {
		obj, _ := slimEndpointSlice(es)
		out[i] = obj.(*cachedSlice)
	}
	return out
}

// dialsOf returns a function that checks a resolver's result and lists its
// dial addresses in snapshot order.
func dialsOf(t *testing.T) func([]upstreams.Target, error) []string {
	return func(ts []upstreams.Target, err error) []string {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return upstreams.NewSnapshot(ts, nil).Dials()
	}
}

func TestServicePort(t *testing.T) {
	svc := testService()
	for port, want := range map[string]string{"http": "http", "80": "http", "web": "http", "metrics": "metrics", "9090": "metrics", "9100": "metrics"} {
		sp, err := servicePort(cached(svc), port)
		if err != nil || sp.Name != want {
			t.Errorf("servicePort(%q) = %v, %v; want %q", port, sp, err, want)
		}
	}
	if _, err := servicePort(cached(svc), "grpc"); err == nil || !strings.Contains(err.Error(), "http (80->web/TCP), metrics (9090->9100/TCP)") {
		t.Errorf("missing port error = %v; want it to list the ports", err)
	}
	if _, err := servicePort(cached(svc), ""); err == nil || !strings.Contains(err.Error(), "has 2 ports") {
		t.Errorf("unnamed port on 2-port service: %v", err)
	}
	svc.Spec.Ports = svc.Spec.Ports[:1]
	if sp, err := servicePort(cached(svc), ""); err != nil || sp.Name != "http" {
		t.Errorf("single-port service: %v, %v", sp, err)
	}
}

func TestEndpointTargets(t *testing.T) {
	svc := testService()
	sp := &svc.Spec.Ports[0]
	dials := dialsOf(t)
	yes, no := ptr.To(true), ptr.To(false)
	eps := []*discoveryv1.EndpointSlice{
		slice(discoveryv1.AddressTypeIPv4, 8080,
			ep{addr: "10.0.0.3", ready: yes, zone: "a"},
			ep{addr: "10.0.0.1", zone: "b"}, // nil Ready counts as ready
			ep{addr: "10.0.0.2", ready: no},
			ep{addr: "10.0.0.9", ready: no, serving: yes, terminating: yes},
			ep{addr: "not-an-ip", ready: yes},
		),
		slice(discoveryv1.AddressTypeIPv6, 8080, ep{addr: "fd00::1", ready: yes, zone: "b"}),
		slice(discoveryv1.AddressTypeFQDN, 8080, ep{addr: "web.example.com", ready: yes}),
		slice(discoveryv1.AddressTypeIPv4, 8080, ep{addr: "10.0.0.3", ready: yes, zone: "a"}), // duplicate across slices
	}
	got := dials(endpointTargets(cached(svc), sp, cachedSlices(eps), selection{}))
	if want := []string{"10.0.0.1:8080", "10.0.0.3:8080", "[fd00::1]:8080"}; !slices.Equal(got, want) {
		t.Errorf("ready endpoints = %v, want %v", got, want)
	}
	got = dials(endpointTargets(cached(svc), sp, cachedSlices(eps), selection{zone: "a"}))
	if want := []string{"10.0.0.3:8080"}; !slices.Equal(got, want) {
		t.Errorf("zone a = %v, want %v", got, want)
	}
	got = dials(endpointTargets(cached(svc), sp, cachedSlices(eps), selection{zone: "c"}))
	if len(got) != 3 {
		t.Errorf("zone without endpoints must fall back to all ready: %v", got)
	}

	onlyTerminating := []*discoveryv1.EndpointSlice{slice(discoveryv1.AddressTypeIPv4, 8080,
		ep{addr: "10.0.0.9", ready: no, serving: yes, terminating: yes},
		ep{addr: "10.0.0.8", ready: no, serving: no, terminating: yes})}
	if _, err := endpointTargets(cached(svc), sp, cachedSlices(onlyTerminating), selection{}); err == nil || !strings.Contains(err.Error(), "no ready endpoints") {
		t.Errorf("no ready endpoints: err = %v", err)
	}
	got = dials(endpointTargets(cached(svc), sp, cachedSlices(onlyTerminating), selection{terminatingBackup: true}))
	if want := []string{"10.0.0.9:8080"}; !slices.Equal(got, want) {
		t.Errorf("terminating fallback = %v, want %v", got, want)
	}
	// Another port's endpoints do not count.
	if _, err := endpointTargets(cached(svc), &svc.Spec.Ports[1], cachedSlices(eps), selection{}); err == nil {
		t.Error("metrics port has no endpoints in these slices, want an error")
	}
}

func TestNodePortAndClusterIP(t *testing.T) {
	svc := testService()
	sp := &svc.Spec.Ports[0]
	dials := dialsOf(t)
	node := func(name, internal, external string, unschedulable bool, ready corev1.ConditionStatus) *corev1.Node {
		n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: corev1.NodeSpec{Unschedulable: unschedulable}}
		n.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: internal}, {Type: corev1.NodeExternalIP, Address: external}}
		if ready != "" {
			n.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: ready}}
		}
		return n
	}
	nodes := []*corev1.Node{
		node("n1", "192.168.0.1", "203.0.113.1", false, corev1.ConditionTrue),
		node("n2", "192.168.0.2", "203.0.113.2", false, ""),
		node("n3", "192.168.0.3", "203.0.113.3", true, corev1.ConditionTrue),
		node("n4", "192.168.0.4", "203.0.113.4", false, corev1.ConditionFalse),
	}
	got := dials(nodePortTargets(cached(svc), sp, nodes, nil, selection{nodeAddress: nodeInternal}))
	if want := []string{"192.168.0.1:30080", "192.168.0.2:30080"}; !slices.Equal(got, want) {
		t.Errorf("node_port internal = %v, want %v", got, want)
	}
	got = dials(nodePortTargets(cached(svc), sp, nodes, nil, selection{nodeAddress: nodeExternal}))
	if want := []string{"203.0.113.1:30080", "203.0.113.2:30080"}; !slices.Equal(got, want) {
		t.Errorf("node_port external = %v, want %v", got, want)
	}
	svc.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
	eps := []*discoveryv1.EndpointSlice{slice(discoveryv1.AddressTypeIPv4, 8080, ep{addr: "10.0.0.1", node: "n2"})}
	got = dials(nodePortTargets(cached(svc), sp, nodes, cachedSlices(eps), selection{}))
	if want := []string{"192.168.0.2:30080"}; !slices.Equal(got, want) {
		t.Errorf("node_port with externalTrafficPolicy Local = %v, want %v", got, want)
	}
	if _, err := nodePortTargets(cached(svc), &svc.Spec.Ports[1], nodes, nil, selection{}); err == nil || !strings.Contains(err.Error(), "no nodePort") {
		t.Errorf("port without nodePort: %v", err)
	}

	got = dials(clusterIPTarget(cached(svc), sp))
	if want := []string{"10.96.0.10:80"}; !slices.Equal(got, want) {
		t.Errorf("cluster_ip = %v, want %v", got, want)
	}
	svc.Spec.ClusterIP = corev1.ClusterIPNone
	if _, err := clusterIPTarget(cached(svc), sp); err == nil || !strings.Contains(err.Error(), "headless") {
		t.Errorf("headless cluster_ip: %v", err)
	}
}
