package eureka

import (
	"fmt"
	"strings"

	"github.com/caddy-discovery/caddy-discovery/upstreams"
)

// selection is what a source selects from an application's instances.
type selection struct {
	secure   bool              // securePort instead of port
	metadata map[string]string // every pair must match; empty: all
}

func (s selection) String() string {
	port := ""
	if s.secure {
		port = "secure port"
	}
	return upstreams.Selecting(s.metadata, port)
}

// skipped counts why instances were left out, for error messages.
type skipped struct {
	total, notUp, metadata, noPort, badAddr int
	marked                                  int // with the metadata, usable or not
}

func (s skipped) String() string {
	var parts []string
	for _, p := range []struct {
		n    int
		what string
	}{
		{s.notUp, "not UP"}, {s.metadata, "not matching the metadata"},
		{s.noPort, "without that port enabled"}, {s.badAddr, "without a valid IP address (ipAddr)"},
	} {
		if p.n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", p.n, p.what))
		}
	}
	return strings.Join(parts, ", ")
}

// targets selects the usable instances: UP, matching the metadata, with the
// chosen port enabled and an IP address (not a host name: requests must not
// wait on DNS; see upstreams.ParseAddr for what else is refused). Eureka
// has no weights: every target weighs 1. Nothing in the list can make it
// panic.
func (s selection) targets(list []Instance) ([]upstreams.Target, skipped) {
	out := make([]upstreams.Target, 0, len(list))
	skip := skipped{total: len(list)}
	for _, in := range list {
		marked := upstreams.HasMetadata(in.Metadata, s.metadata)
		if marked {
			skip.marked++
		}
		if in.Status != StatusUp {
			skip.notUp++
			continue
		}
		if !marked {
			skip.metadata++
			continue
		}
		port := in.Port
		if s.secure {
			port = in.SecurePort
		}
		if !port.Enabled || port.Number == 0 {
			skip.noPort++
			continue
		}
		addr, ok := upstreams.ParseAddr(in.IPAddr)
		if !ok {
			skip.badAddr++
			continue
		}
		out = append(out, upstreams.Target{Addr: addr, Port: port.Number, Weight: 1})
	}
	return out, skip
}

// noTargets says why the application has no usable instance.
func noTargets(where, app string, sel selection, skip skipped) error {
	if skip.total == 0 {
		return upstreams.Problem(upstreams.KindNotFound, fmt.Errorf("eureka %s: application %s has no instances in the registry: check its name (spring.application.name) and that its instances registered with these servers", where, app))
	}
	what := ""
	if s := sel.String(); s != "" {
		what = " (selecting " + s + ")"
	}
	return upstreams.Problem(upstreams.NotSelected(skip.total, skip.marked), fmt.Errorf("eureka %s: application %s has no usable instance%s: of %d, %s", where, app, what, skip.total, skip))
}
