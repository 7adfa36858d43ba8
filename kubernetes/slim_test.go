package kubernetes

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
	"unique"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

func TestSlimEndpointSlice(t *testing.T) {
	full := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{
			Name: "web-abc", Namespace: "shop", UID: "u1", ResourceVersion: "42",
			Labels:        map[string]string{discoveryv1.LabelServiceName: "web", discoveryv1.LabelManagedBy: "endpointslice-controller.k8s.io"},
			Annotations:   map[string]string{corev1.EndpointsLastChangeTriggerTime: "2026-11-26T00:00:00Z", "other": "x"},
			ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "kube-controller-manager"}},
		},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To[int32](8080)}},
		Endpoints: []discoveryv1.Endpoint{{
			Addresses:  []string{"10.0.0.1"},
			Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(false), Serving: ptr.To(true), Terminating: ptr.To(true)},
			Hostname:   ptr.To("web-0"),
			TargetRef:  &corev1.ObjectReference{Kind: "Pod", Name: "web-0"},
			NodeName:   ptr.To("node-1"),
			Zone:       ptr.To("a"),
			Hints:      &discoveryv1.EndpointHints{ForZones: []discoveryv1.ForZone{{Name: "a"}}},
		}, {
			Addresses: []string{"10.0.0.2"},
		}},
	}
	full.Endpoints = append(full.Endpoints, discoveryv1.Endpoint{Addresses: []string{"not-an-ip"}, NodeName: ptr.To("node-2")},
		discoveryv1.Endpoint{Addresses: []string{"10.0.0.3", "10.0.0.4"}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}})
	full.Ports = append(full.Ports, discoveryv1.EndpointPort{Name: ptr.To("none")}, discoveryv1.EndpointPort{Name: ptr.To("udp"), Port: ptr.To[int32](53), Protocol: ptr.To(corev1.ProtocolUDP)})
	obj, err := slimEndpointSlice(full)
	if err != nil {
		t.Fatal(err)
	}
	es := obj.(*cachedSlice)
	if es.Name != "web-abc" || es.Namespace != "shop" || es.UID != "u1" || es.ResourceVersion != "42" {
		t.Errorf("identity lost: %+v", es.ObjectMeta)
	}
	if es.Labels != nil || es.Annotations != nil || es.ManagedFields != nil {
		t.Errorf("metadata kept: %+v", es.ObjectMeta)
	}
	if es.service != "web" || !es.trigger.Equal(time.Date(2026, 11, 26, 0, 0, 0, 0, time.UTC)) || !es.dialable {
		t.Errorf("service %q, trigger %v, dialable %v", es.service, es.trigger, es.dialable)
	}
	if want := []slicePort{{"http", corev1.ProtocolTCP, 8080}, {"udp", corev1.ProtocolUDP, 53}}; !slices.Equal(es.ports, want) {
		t.Errorf("ports = %+v, want %+v (a port without a number dropped, TCP by default)", es.ports, want)
	}
	got := make([]string, len(es.endpoints))
	for i, e := range es.endpoints {
		got[i] = fmt.Sprintf("%v node=%q zone=%q ready=%v servingTerminating=%v", e.addr, e.node.Value(), e.zone.Value(), e.ready, e.servingTerminating)
	}
	want := []string{
		`10.0.0.1 node="node-1" zone="a" ready=false servingTerminating=true`,
		`10.0.0.2 node="" zone="" ready=true servingTerminating=false`, // unknown Ready counts as ready
		`invalid IP node="node-2" zone="" ready=true servingTerminating=false`,
		`10.0.0.3 node="" zone="" ready=true servingTerminating=false`,
		`10.0.0.4 node="" zone="" ready=true servingTerminating=false`,
	}
	if !slices.Equal(got, want) {
		t.Errorf("endpoints:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if unique.Make("node-1") != es.endpoints[0].node {
		t.Error("node names are not shared")
	}

	// an FQDN slice keeps its endpoints' nodes, but nothing to dial
	fqdn := &discoveryv1.EndpointSlice{AddressType: discoveryv1.AddressTypeFQDN, Endpoints: []discoveryv1.Endpoint{{Addresses: []string{"10.0.0.1"}, NodeName: ptr.To("n")}}}
	if obj, _ := slimEndpointSlice(fqdn); obj.(*cachedSlice).dialable || obj.(*cachedSlice).endpoints[0].addr.IsValid() {
		t.Errorf("FQDN slice: %+v", obj)
	}
	// an empty slice stays empty; other objects, a cached slice too, pass through
	if obj, _ := slimEndpointSlice(&discoveryv1.EndpointSlice{}); obj.(*cachedSlice).endpoints != nil {
		t.Error("an empty slice got endpoints")
	}
	tomb := cacheTombstone{}
	if obj, _ := slimEndpointSlice(tomb); obj != tomb {
		t.Error("a non-slice was changed")
	}
	if again, _ := slimEndpointSlice(es); again != es {
		t.Error("a cached slice was changed")
	}
}

type cacheTombstone struct{}

func TestSlimService(t *testing.T) {
	full := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "shop", ResourceVersion: "7",
			Annotations: map[string]string{"kubectl.kubernetes.io/last-applied-configuration": "{...}"}},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeNodePort, ClusterIP: "10.96.0.10", ExternalTrafficPolicy: corev1.ServiceExternalTrafficPolicyLocal,
			Ports: []corev1.ServicePort{{Name: "http", Port: 80, NodePort: 30080}}, Selector: map[string]string{"app": "web"}},
	}
	obj, _ := slimService(full)
	svc := obj.(*cachedService)
	if svc.Name != "web" || svc.Namespace != "shop" || svc.ResourceVersion != "7" || svc.Annotations != nil {
		t.Errorf("slim service metadata: %+v", svc)
	}
	if svc.typ != corev1.ServiceTypeNodePort || svc.clusterIP != "10.96.0.10" ||
		svc.externalTrafficPolicy != corev1.ServiceExternalTrafficPolicyLocal || svc.ports[0].NodePort != 30080 {
		t.Errorf("slim service lost what resolving reads: %+v", svc)
	}
	if again, _ := slimService(svc); again != svc {
		t.Error("a cached service was changed")
	}
}
