package kubernetes

import (
	"testing"

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
	obj, err := slimEndpointSlice(full)
	if err != nil {
		t.Fatal(err)
	}
	es := obj.(*discoveryv1.EndpointSlice)
	if es.Name != "web-abc" || es.Namespace != "shop" || es.UID != "u1" || es.ResourceVersion != "42" {
		t.Errorf("identity lost: %+v", es.ObjectMeta)
	}
	if len(es.Labels) != 1 || es.Labels[discoveryv1.LabelServiceName] != "web" {
		t.Errorf("labels = %v, want the service name only", es.Labels)
	}
	if len(es.Annotations) != 1 || es.Annotations[corev1.EndpointsLastChangeTriggerTime] == "" {
		t.Errorf("annotations = %v, want the trigger time only", es.Annotations)
	}
	if es.ManagedFields != nil || es.AddressType != discoveryv1.AddressTypeIPv4 || len(es.Ports) != 1 {
		t.Errorf("slim slice = %+v", es)
	}
	ep := es.Endpoints[0]
	if ep.Addresses[0] != "10.0.0.1" || *ep.Conditions.Ready || !*ep.Conditions.Serving || !*ep.Conditions.Terminating ||
		*ep.NodeName != "node-1" || *ep.Zone != "a" {
		t.Errorf("endpoint lost what resolving reads: %+v", ep)
	}
	if ep.TargetRef != nil || ep.Hostname != nil || ep.Hints != nil {
		t.Errorf("endpoint keeps what nothing reads: %+v", ep)
	}
	if c := es.Endpoints[1].Conditions; c.Ready != nil || c.Serving != nil || c.Terminating != nil {
		t.Errorf("unknown conditions must stay unknown (nil): %+v", c)
	}

	// an empty slice stays empty; other objects pass through
	if obj, _ := slimEndpointSlice(&discoveryv1.EndpointSlice{}); obj.(*discoveryv1.EndpointSlice).Endpoints != nil {
		t.Error("an empty slice got endpoints")
	}
	tomb := cacheTombstone{}
	if obj, _ := slimEndpointSlice(tomb); obj != tomb {
		t.Error("a non-slice was changed")
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
	svc := obj.(*corev1.Service)
	if svc.Name != "web" || svc.Namespace != "shop" || svc.ResourceVersion != "7" || svc.Annotations != nil || svc.Spec.Selector != nil {
		t.Errorf("slim service metadata: %+v", svc)
	}
	if svc.Spec.Type != corev1.ServiceTypeNodePort || svc.Spec.ClusterIP != "10.96.0.10" ||
		svc.Spec.ExternalTrafficPolicy != corev1.ServiceExternalTrafficPolicyLocal || svc.Spec.Ports[0].NodePort != 30080 {
		t.Errorf("slim service lost what resolving reads: %+v", svc.Spec)
	}
}
