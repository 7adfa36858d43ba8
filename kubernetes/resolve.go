package kubernetes

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/caddy-discovery/caddy-discovery/upstreams"
)

// Target modes.
const (
	targetEndpoints = "endpoints"
	targetClusterIP = "cluster_ip"
	targetNodePort  = "node_port"
)

// Node address types for node_port.
const (
	nodeInternal = "internal"
	nodeExternal = "external"
)

// selection is how a view turns a Service into targets.
type selection struct {
	target            string // targetEndpoints, targetClusterIP or targetNodePort
	nodeAddress       string // nodeInternal or nodeExternal
	zone              string // preferred zone, or ""
	terminatingBackup bool   // use serving-but-terminating endpoints when none is ready

	// Which Services the source may see at all.
	namespaces namespaces // where a reference may point
	labels     string     // the watch's label selector, "" for all
}

// servicePort finds the port that ref names: by the Service port's name, its
// number, or its targetPort; "" when the Service has exactly one port.
func servicePort(svc *cachedService, port string) (*corev1.ServicePort, error) {
	ports := svc.ports
	if port == "" {
		if len(ports) == 1 {
			return &ports[0], nil
		}
		return nil, fmt.Errorf("service %s/%s has %d ports; name one of them (e.g. %s/%s:%s); ports: %s",
			svc.Namespace, svc.Name, len(ports), svc.Namespace, svc.Name, firstPortName(ports), describePorts(ports))
	}
	n, numErr := strconv.Atoi(port)
	match := []func(p *corev1.ServicePort) bool{
		func(p *corev1.ServicePort) bool { return p.Name == port },
		func(p *corev1.ServicePort) bool { return numErr == nil && int(p.Port) == n },
		func(p *corev1.ServicePort) bool {
			if p.TargetPort.Type == intstr.String {
				return p.TargetPort.StrVal == port
			}
			return numErr == nil && p.TargetPort.IntValue() == n
		},
	}
	for _, m := range match {
		for i := range ports {
			if m(&ports[i]) {
				return &ports[i], nil
			}
		}
	}
	return nil, fmt.Errorf("service %s/%s has no port %q; ports: %s", svc.Namespace, svc.Name, port, describePorts(ports))
}

func firstPortName(ports []corev1.ServicePort) string {
	if len(ports) > 0 && ports[0].Name != "" {
		return ports[0].Name
	}
	if len(ports) > 0 {
		return strconv.Itoa(int(ports[0].Port))
	}
	return "http"
}

// describePorts lists ports as "http (80->8080/TCP), metrics (9090->metrics/TCP)".
func describePorts(ports []corev1.ServicePort) string {
	if len(ports) == 0 {
		return "none"
	}
	var b strings.Builder
	for i, p := range ports {
		if i > 0 {
			b.WriteString(", ")
		}
		name := p.Name
		if name == "" {
			name = "(unnamed)"
		}
		fmt.Fprintf(&b, "%s (%d->%s/%s)", name, p.Port, p.TargetPort.String(), p.Protocol)
	}
	return b.String()
}

// endpointTargets lists the endpoints of sp in the Service's EndpointSlices:
// ready ones (a nil Ready condition counts as ready), restricted to the
// preferred zone when it has any; else, when sel asks for it, the serving
// endpoints that are terminating, as kube-proxy does.
func endpointTargets(svc *cachedService, sp *corev1.ServicePort, eps []*cachedSlice, sel selection) ([]upstreams.Target, error) {
	var ready, inZone, terminating []upstreams.Target
	for _, es := range eps {
		if !es.dialable {
			continue // FQDN slices name no IP to dial
		}
		port, ok := es.port(sp)
		if !ok {
			continue
		}
		for _, ep := range es.endpoints {
			if !ep.addr.IsValid() || !ep.ready && !ep.servingTerminating {
				continue
			}
			t := upstreams.Target{Addr: ep.addr, Port: port, Weight: 1}
			switch {
			case ep.servingTerminating:
				terminating = append(terminating, t)
			case sel.zone != "" && ep.zone.Value() == sel.zone:
				inZone = append(inZone, t)
				fallthrough
			default:
				ready = append(ready, t)
			}
		}
	}
	switch {
	case len(inZone) > 0:
		return inZone, nil
	case len(ready) > 0:
		return ready, nil
	case sel.terminatingBackup && len(terminating) > 0:
		return terminating, nil
	}
	return nil, upstreams.Problem(upstreams.KindNoBackends, fmt.Errorf("service %s/%s port %s has no ready endpoints", svc.Namespace, svc.Name, portLabel(sp)))
}

// port finds sp's port number in the slice: slices list ports by the
// Service port's name, with the number that the targetPort resolved to.
func (es *cachedSlice) port(sp *corev1.ServicePort) (uint16, bool) {
	proto := sp.Protocol
	if proto == "" {
		proto = corev1.ProtocolTCP
	}
	for _, p := range es.ports {
		if p.name == sp.Name && p.protocol == proto {
			return p.port, true
		}
	}
	return 0, false
}

// validPort reports whether a port number from the API server can be dialed.
func validPort(p int32) bool { return p >= 1 && p <= 65535 }

func portLabel(sp *corev1.ServicePort) string {
	if sp.Name != "" {
		return fmt.Sprintf("%q (%d)", sp.Name, sp.Port)
	}
	return strconv.Itoa(int(sp.Port))
}

// clusterIPTarget is the Service's virtual IP with the Service port.
func clusterIPTarget(svc *cachedService, sp *corev1.ServicePort) ([]upstreams.Target, error) {
	ip := svc.clusterIP
	if ip == "" || ip == corev1.ClusterIPNone {
		return nil, upstreams.Problem(upstreams.KindMisconfigured, fmt.Errorf("service %s/%s is headless (clusterIP: None), so target cluster_ip has no address; use target endpoints",
			svc.Namespace, svc.Name))
	}
	addr, ok := upstreams.ParseAddr(ip)
	if !ok {
		return nil, fmt.Errorf("service %s/%s has an unusable clusterIP %q", svc.Namespace, svc.Name, ip)
	}
	if !validPort(sp.Port) {
		return nil, upstreams.Problem(upstreams.KindMisconfigured, fmt.Errorf("service %s/%s port %s is out of range 1-65535",
			svc.Namespace, svc.Name, portLabel(sp)))
	}
	return []upstreams.Target{{Addr: addr, Port: uint16(sp.Port), Weight: 1}}, nil
}

// nodePortTargets is every schedulable, not-NotReady node's internal (or
// external) IP with the Service's node port. With externalTrafficPolicy
// Local, only nodes that run a ready endpoint answer, so only those are used.
func nodePortTargets(svc *cachedService, sp *corev1.ServicePort, nodes []*corev1.Node, eps []*cachedSlice, sel selection) ([]upstreams.Target, error) {
	if sp.NodePort == 0 {
		return nil, upstreams.Problem(upstreams.KindMisconfigured, fmt.Errorf("service %s/%s port %s has no nodePort (type %s); use type NodePort or LoadBalancer, or another target",
			svc.Namespace, svc.Name, portLabel(sp), svc.typ))
	}
	if !validPort(sp.NodePort) {
		return nil, upstreams.Problem(upstreams.KindMisconfigured, fmt.Errorf("service %s/%s port %s has nodePort %d, out of range 1-65535",
			svc.Namespace, svc.Name, portLabel(sp), sp.NodePort))
	}
	var local map[string]bool
	if svc.externalTrafficPolicy == corev1.ServiceExternalTrafficPolicyLocal {
		local = make(map[string]bool)
		for _, es := range eps {
			for _, ep := range es.endpoints {
				if ep.ready && ep.node.Value() != "" {
					local[ep.node.Value()] = true
				}
			}
		}
	}
	want := corev1.NodeInternalIP
	if sel.nodeAddress == nodeExternal {
		want = corev1.NodeExternalIP
	}
	var ts []upstreams.Target
	for _, n := range nodes {
		if n.Spec.Unschedulable || nodeNotReady(n) || (local != nil && !local[n.Name]) {
			continue
		}
		for _, a := range n.Status.Addresses {
			if a.Type != want {
				continue
			}
			if addr, ok := upstreams.ParseAddr(a.Address); ok {
				ts = append(ts, upstreams.Target{Addr: addr, Port: uint16(sp.NodePort), Weight: 1})
			}
		}
	}
	if len(ts) == 0 {
		return nil, upstreams.Problem(upstreams.KindNoBackends, fmt.Errorf("service %s/%s: no schedulable, ready node has an %s address (%d nodes)",
			svc.Namespace, svc.Name, want, len(nodes)))
	}
	return ts, nil
}

// nodeNotReady reports a Ready condition that is False or Unknown; a node
// without one (no kubelet reported yet) is not excluded.
func nodeNotReady(n *corev1.Node) bool {
	i := slices.IndexFunc(n.Status.Conditions, func(c corev1.NodeCondition) bool { return c.Type == corev1.NodeReady })
	return i >= 0 && n.Status.Conditions[i].Status != corev1.ConditionTrue
}
