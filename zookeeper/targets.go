package zookeeper

import (
	"errors"
	"fmt"

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

// decode reads one node in the view's format.
func (v *view) decode(n node) (upstreams.Record, error) {
	switch v.format {
	case formatDubbo:
		return decodeDubbo(n.name, v.protocols)
	case formatAPISIX:
		return decodeAPISIX(n.data)
	}
	return decodeCurator(n.data, v.sslPort)
}

// targets decodes the nodes into targets: each node's instance, enabled,
// with an address Caddy can dial (an IP address or a host name, see
// upstreams.Skipped.Take), matching the metadata. Nothing a node holds can
// make it panic.
func (v *view) targets(nodes []node) ([]upstreams.Target, upstreams.Skipped) {
	out := make([]upstreams.Target, 0, len(nodes))
	var s upstreams.Skipped
	for _, n := range nodes {
		in, err := v.decode(n)
		switch {
		case errors.Is(err, errDisabled):
			s.Add("disabled or not UP")
			continue
		case err != nil:
			s.AddExample("not in the format", fmt.Sprintf("node %q: %v", upstreams.Clip(n.name), err))
			continue
		}
		out = s.Take(out, fmt.Sprintf("node %q", upstreams.Clip(n.name)), in, v.metadata)
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
		why = upstreams.Problem(skip.Kind(), fmt.Errorf("%s: none of the %d nodes under %s is a usable %s instance: %s",
			v.where, len(nodes), v.path, v.format, skip))
	}
	v.pub.List(targets, why)
}

// Trouble publishes what keeps the nodes from being current.
func (v *view) Trouble(err error) { v.pub.Trouble(err) }

// selection describes the view's selection for the admin dump.
func (v *view) selection() string {
	ssl := ""
	if v.sslPort {
		ssl = "sslPort"
	}
	return upstreams.Selecting(v.metadata, ssl)
}
