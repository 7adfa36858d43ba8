package kubernetes

import (
	"net/netip"
	"time"
	"unique"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/caddy-discovery/caddy-discovery/upstreams"
)

// The informers hold every Service and EndpointSlice of each watched
// namespace, most of them of Services no route references. As decoded, an
// EndpointSlice carries much that resolving targets never reads (a Pod
// reference, hostname and hints per endpoint, labels, annotations, managed
// fields), and what it reads in a form made for the wire: a pointer per
// condition, node and zone, a string per address. The transforms below turn
// each object into a compact one of this package, holding only what
// resolving reads, parsed once: a cached endpoint is 48 bytes, and node and
// zone names are shared (see the README's scale table). Cached objects are
// never written to.

// cachedSlice is what the informers keep of an EndpointSlice.
type cachedSlice struct {
	metav1.ObjectMeta // what identifies it to the informer (see slimMeta)

	service  string    // its Service: the kubernetes.io/service-name label
	trigger  time.Time // endpoints.kubernetes.io/last-change-trigger-time, or zero
	dialable bool      // addresses are IPs (IPv4 or IPv6 slices, not FQDN)
	ports    []slicePort
	// endpoints has an entry per address of each endpoint (one with no
	// address for an endpoint whose addresses are no IP).
	endpoints []endpoint
}

// slicePort is a port an EndpointSlice lists: the Service port's name and
// protocol, with the number that its targetPort resolved to.
type slicePort struct {
	name     string
	protocol corev1.Protocol // TCP when the slice leaves it out
	port     uint16
}

// endpoint is one address of an EndpointSlice's endpoint.
type endpoint struct {
	addr       netip.Addr // the zero Addr if not an IP
	node, zone unique.Handle[string]
	// ready: the Ready condition is true or unknown (nil), which counts as
	// ready. servingTerminating: not ready, but Serving and Terminating
	// are both true (a Pod shutting down gracefully).
	ready, servingTerminating bool
}

// cachedService is what the informers keep of a Service: what resolving its
// targets reads.
type cachedService struct {
	metav1.ObjectMeta

	typ                   corev1.ServiceType
	clusterIP             string
	externalName          string
	externalTrafficPolicy corev1.ServiceExternalTrafficPolicy
	ports                 []corev1.ServicePort
}

// slimEndpointSlice turns an EndpointSlice into a cachedSlice; anything else
// (including a cachedSlice) passes through, as client-go asks of transforms.
func slimEndpointSlice(obj any) (any, error) {
	es, ok := obj.(*discoveryv1.EndpointSlice)
	if !ok {
		return obj, nil
	}
	s := &cachedSlice{
		ObjectMeta: slimMeta(es.ObjectMeta),
		service:    es.Labels[discoveryv1.LabelServiceName],
		dialable:   es.AddressType == discoveryv1.AddressTypeIPv4 || es.AddressType == discoveryv1.AddressTypeIPv6,
	}
	if t, err := time.Parse(time.RFC3339Nano, es.Annotations[corev1.EndpointsLastChangeTriggerTime]); err == nil {
		s.trigger = t
	}
	for _, p := range es.Ports {
		if p.Port == nil || !validPort(*p.Port) {
			continue // no number to dial
		}
		sp := slicePort{protocol: corev1.ProtocolTCP, port: uint16(*p.Port)}
		if p.Name != nil {
			sp.name = *p.Name
		}
		if p.Protocol != nil {
			sp.protocol = *p.Protocol
		}
		s.ports = append(s.ports, sp)
	}
	n := 0
	for _, ep := range es.Endpoints {
		n += max(len(ep.Addresses), 1)
	}
	if n > 0 {
		s.endpoints = make([]endpoint, 0, n)
	}
	for _, ep := range es.Endpoints {
		c := ep.Conditions
		e := endpoint{
			node:               unique.Make(deref(ep.NodeName)),
			zone:               unique.Make(deref(ep.Zone)),
			ready:              c.Ready == nil || *c.Ready,
			servingTerminating: c.Ready != nil && !*c.Ready && c.Serving != nil && *c.Serving && c.Terminating != nil && *c.Terminating,
		}
		added := false
		for _, a := range ep.Addresses {
			if addr, ok := upstreams.ParseAddr(a); ok && s.dialable {
				e.addr = addr
				s.endpoints = append(s.endpoints, e)
				added = true
			}
		}
		if !added { // its node still counts for externalTrafficPolicy Local
			s.endpoints = append(s.endpoints, e)
		}
	}
	return s, nil
}

// slimService turns a Service into a cachedService; anything else passes
// through.
func slimService(obj any) (any, error) {
	svc, ok := obj.(*corev1.Service)
	if !ok {
		return obj, nil
	}
	return &cachedService{
		ObjectMeta:            slimMeta(svc.ObjectMeta),
		typ:                   svc.Spec.Type,
		clusterIP:             svc.Spec.ClusterIP,
		externalName:          svc.Spec.ExternalName,
		externalTrafficPolicy: svc.Spec.ExternalTrafficPolicy,
		ports:                 svc.Spec.Ports,
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

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}
