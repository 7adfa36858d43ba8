package kubernetes

import (
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// The informers hold every Service and EndpointSlice of each watched
// namespace, most of them of Services no route references. As decoded, an
// EndpointSlice carries much that resolving targets never reads: a Pod
// reference, hostname and hints per endpoint, labels, annotations and
// managed fields. The transforms below keep only what this package reads,
// which roughly halves the memory per cached endpoint (see the README's
// scale table). Objects in the cache are never written to, so the
// conditions may share their booleans.

// slimEndpointSlice keeps an EndpointSlice's address type, ports and, per
// endpoint, its addresses, conditions, node and zone; of its metadata, what
// the informer needs, the Service name label and the change-trigger
// annotation (the propagation metric's start).
func slimEndpointSlice(obj any) (any, error) {
	es, ok := obj.(*discoveryv1.EndpointSlice)
	if !ok {
		return obj, nil
	}
	slim := &discoveryv1.EndpointSlice{
		ObjectMeta:  slimMeta(es.ObjectMeta),
		AddressType: es.AddressType,
		Ports:       es.Ports,
	}
	if name, ok := es.Labels[discoveryv1.LabelServiceName]; ok {
		slim.Labels = map[string]string{discoveryv1.LabelServiceName: name}
	}
	if t, ok := es.Annotations[corev1.EndpointsLastChangeTriggerTime]; ok {
		slim.Annotations = map[string]string{corev1.EndpointsLastChangeTriggerTime: t}
	}
	if len(es.Endpoints) > 0 {
		slim.Endpoints = make([]discoveryv1.Endpoint, len(es.Endpoints))
		for i, ep := range es.Endpoints {
			slim.Endpoints[i] = discoveryv1.Endpoint{
				Addresses: ep.Addresses,
				Conditions: discoveryv1.EndpointConditions{
					Ready:       sharedBool(ep.Conditions.Ready),
					Serving:     sharedBool(ep.Conditions.Serving),
					Terminating: sharedBool(ep.Conditions.Terminating),
				},
				NodeName: ep.NodeName,
				Zone:     ep.Zone,
			}
		}
	}
	return slim, nil
}

// slimService keeps what resolving a Service's targets reads: its type,
// cluster IP, external name, external traffic policy and ports.
func slimService(obj any) (any, error) {
	svc, ok := obj.(*corev1.Service)
	if !ok {
		return obj, nil
	}
	return &corev1.Service{
		ObjectMeta: slimMeta(svc.ObjectMeta),
		Spec: corev1.ServiceSpec{
			Type:                  svc.Spec.Type,
			ClusterIP:             svc.Spec.ClusterIP,
			ExternalName:          svc.Spec.ExternalName,
			ExternalTrafficPolicy: svc.Spec.ExternalTrafficPolicy,
			Ports:                 svc.Spec.Ports,
		},
	}, nil
}

// slimMeta keeps what identifies an object to the informer.
func slimMeta(m metav1.ObjectMeta) metav1.ObjectMeta {
	return metav1.ObjectMeta{
		Name:              m.Name,
		Namespace:         m.Namespace,
		UID:               m.UID,
		ResourceVersion:   m.ResourceVersion,
		DeletionTimestamp: m.DeletionTimestamp,
	}
}

var yes, no = true, false

// sharedBool returns a pointer to one of two shared booleans of b's value.
func sharedBool(b *bool) *bool {
	switch {
	case b == nil:
		return nil
	case *b:
		return &yes
	default:
		return &no
	}
}
