package etcd

import (
	"fmt"

	"github.com/caddy-discovery/caddy-discovery/upstreams"
)

// view is one source's reading of a shared watch's keys: its format, the
// JSON fields, and its metadata selection. The watch's fanout hands it the
// keys and the trouble, and it publishes what it selects through the
// source's publisher.
type view struct {
	format   string
	fields   JSONFields
	metadata map[string]string // every pair must match; empty: all
	where    string            // the connection, for messages
	prefix   string
	pub      *upstreams.Publisher
}

// targets decodes the keys into targets: each key's instance in the view's
// format, with an address Caddy can dial (an IP address or a host name,
// see upstreams.Skipped.Take), matching the metadata. Nothing a key holds
// can make it panic.
func (v *view) targets(keys []kv) ([]upstreams.Target, upstreams.Skipped) {
	out := make([]upstreams.Target, 0, len(keys))
	var s upstreams.Skipped
	for _, e := range keys {
		in, err := decode(v.format, v.fields, e.value)
		if err != nil {
			s.AddExample("not in the format", fmt.Sprintf("key %q: %v", e.key, err))
			continue
		}
		out = s.Take(out, fmt.Sprintf("key %q", e.key), in, v.metadata)
	}
	return out, s
}

// Receive publishes what the view selects from the prefix's keys, or why
// there is nothing.
func (v *view) Receive(keys []kv) {
	targets, skip := v.targets(keys)
	var why error
	switch {
	case len(targets) > 0:
	case len(keys) == 0:
		why = upstreams.Problem(upstreams.KindNotFound, fmt.Errorf("%s: no keys under %q: the service has no registered instance, or service, prefix or format is wrong (format %s reads keys under %q)",
			v.where, v.prefix, v.format, v.prefix))
	default:
		why = upstreams.Problem(skip.Kind(), fmt.Errorf("%s: none of the %d keys under %q is a usable %s instance: %s",
			v.where, len(keys), v.prefix, v.format, skip))
	}
	v.pub.List(targets, why)
}

// Trouble publishes what keeps the keys from being current.
func (v *view) Trouble(err error) { v.pub.Trouble(err) }

// selection describes the view's selection for the admin dump.
func (v *view) selection() string {
	format := ""
	if v.format != formatEtcd {
		format = "format " + v.format
	}
	return upstreams.Selecting(v.metadata, format)
}
