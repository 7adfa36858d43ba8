package consul

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/caddy-discovery/caddy-discovery/upstreams"
)

// query is what one long-poll asks Consul: the passing instances of a
// service in a datacenter, namespace and partition, with all of some tags
// and matching a filter expression. Sources asking the same query through
// the same client share one long-poll.
type query struct {
	service    string
	datacenter string   // "" for the agent's own
	tags       []string // sorted, without duplicates
	filter     string
	namespace  string
	partition  string
}

// key identifies the query among the long-polls of one client.
func (q query) key() string {
	parts := []string{q.service, q.datacenter, q.filter, q.namespace, q.partition}
	parts = append(parts, q.tags...)
	for i, p := range parts {
		parts[i] = strconv.Quote(p)
	}
	return strings.Join(parts, "|")
}

// subject names the service for messages: service "web" in datacenter
// "dc2", namespace "team", partition "eu".
func (q query) subject() string {
	s := fmt.Sprintf("service %q", q.service)
	var in []string
	if q.datacenter != "" {
		in = append(in, fmt.Sprintf("datacenter %q", q.datacenter))
	}
	if q.namespace != "" {
		in = append(in, fmt.Sprintf("namespace %q", q.namespace))
	}
	if q.partition != "" {
		in = append(in, fmt.Sprintf("partition %q", q.partition))
	}
	if len(in) > 0 {
		s += " in " + strings.Join(in, ", ")
	}
	return s
}

// selection describes the tags and filter, or "" without them.
func (q query) selection() string {
	var tags, filter string
	if len(q.tags) > 0 {
		tags = "tags " + strings.Join(q.tags, ",")
	}
	if q.filter != "" {
		filter = fmt.Sprintf("filter %q", q.filter)
	}
	return upstreams.Selecting(nil, tags, filter)
}

// name is the source's service name in the admin dump and the metrics:
// [namespace/][partition:]service[@datacenter], then the selection in
// parentheses.
func (q query) name() string {
	s := q.service
	if q.datacenter != "" {
		s += "@" + q.datacenter
	}
	if q.partition != "" {
		s = q.partition + ":" + s
	}
	if q.namespace != "" {
		s = q.namespace + "/" + s
	}
	return upstreams.Named(s, q.selection())
}

// normalizeTags sorts tags and drops duplicates: the order of tags does not
// change what the query selects.
func normalizeTags(tags []string) []string {
	if len(tags) == 0 {
		return nil
	}
	out := slices.Clone(tags)
	slices.Sort(out)
	return slices.Compact(out)
}
