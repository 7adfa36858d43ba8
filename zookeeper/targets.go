package zookeeper

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/caddy-discovery/caddy-discovery/upstreams"
)

// view is one source's reading of a shared watch's nodes: its format and
// selection. The watch's fanout hands it the nodes and the trouble, and it
// publishes what it selects through the source's publisher.
type view struct {
	format    string
	sslPort   bool              // curator: the sslPort
	protocols []string          // dubbo: the protocols proxied
	metadata  map[string]string // every pair must match; empty: all
	where     string            // the connection, for messages
	path      string
	pub       *upstreams.Publisher
}

// skipped counts why nodes were left out, for messages.
type skipped struct {
	undecodable, disabled, badAddr, metadata int
	example                                  string // one node's problem
}

func (s skipped) String() string {
	var parts []string
	for _, p := range []struct {
		n    int
		what string
	}{{s.undecodable, "not in the format"}, {s.disabled, "disabled or not UP"}, {s.badAddr, "without an IP address Caddy can dial"}, {s.metadata, "not matching the metadata"}} {
		if p.n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", p.n, p.what))
		}
	}
	out := strings.Join(parts, ", ")
	if s.example != "" {
		out += " (such as " + s.example + ")"
	}
	return out
}

// decode reads one node in the view's format.
func (v *view) decode(n node) (instance, error) {
	if v.format == formatDubbo {
		return decodeDubbo(n.name, v.protocols)
	}
	return decodeCurator(n.data, v.sslPort)
}

// targets decodes the nodes into targets: each node's instance, enabled,
// with an IP address Caddy can dial (see upstreams.ParseAddr; a host name
// is skipped and explained, never looked up), matching the metadata.
// Nothing a node holds can make it panic.
func (v *view) targets(nodes []node) ([]upstreams.Target, skipped) {
	out := make([]upstreams.Target, 0, len(nodes))
	var s skipped
	note := func(n *int, name string, err error) {
		*n++
		if s.example == "" {
			s.example = fmt.Sprintf("node %q: %v", clip(name), err)
		}
	}
	for _, n := range nodes {
		in, err := v.decode(n)
		switch {
		case errors.Is(err, errDisabled):
			s.disabled++
			continue
		case err != nil:
			note(&s.undecodable, n.name, err)
			continue
		}
		addr, ok := upstreams.ParseAddr(strings.TrimSuffix(strings.TrimPrefix(in.host, "["), "]"))
		if !ok {
			note(&s.badAddr, n.name, fmt.Errorf("%q is not an IP address: register the instance with its IP (Spring Cloud Zookeeper: spring.cloud.zookeeper.discovery.prefer-ip-address=true)", clip(in.host)))
			continue
		}
		if !upstreams.HasMetadata(in.metadata, v.metadata) {
			s.metadata++
			continue
		}
		out = append(out, upstreams.Target{Addr: addr, Port: uint16(in.port), Weight: max(in.weight, 1)})
	}
	return out, s
}

// Receive publishes what the view selects from the path's nodes, or why
// there is nothing.
func (v *view) Receive(nodes []node) {
	targets, skip := v.targets(nodes)
	var why error
	switch {
	case len(targets) > 0:
	case len(nodes) == 0:
		why = upstreams.Problem(upstreams.KindNotFound, fmt.Errorf("%s: %s has no instances: none is registered, or service, base_path or format is wrong (format %s reads the children of %s)",
			v.where, v.path, v.format, v.path))
	default:
		why = upstreams.Problem(upstreams.KindNoBackends, fmt.Errorf("%s: none of the %d nodes under %s is a usable %s instance: %s",
			v.where, len(nodes), v.path, v.format, skip))
	}
	v.pub.List(targets, why)
}

// Trouble publishes what keeps the nodes from being current.
func (v *view) Trouble(err error) { v.pub.Trouble(err) }

// selection describes the view's selection for the admin dump.
func (v *view) selection() string {
	var parts []string
	if v.sslPort {
		parts = append(parts, "sslPort")
	}
	if len(v.metadata) > 0 {
		var kv []string
		for _, k := range slices.Sorted(maps.Keys(v.metadata)) {
			kv = append(kv, k+"="+v.metadata[k])
		}
		parts = append(parts, "metadata "+strings.Join(kv, ","))
	}
	return strings.Join(parts, ", ")
}
