package consul

import (
	"fmt"
	"strings"

	"github.com/hashicorp/consul/api"

	"github.com/caddy-discovery/caddy-discovery/upstreams"
)

// skipped counts the passing instances left out for want of an address
// Caddy can dial, for messages.
type skipped struct {
	total   int
	badAddr int
	example string // one of the bad addresses, as Consul sent it
}

func (s skipped) String() string {
	if s.badAddr == 0 {
		return ""
	}
	return fmt.Sprintf("of %d passing instances, %d have no address Caddy can dial (such as %q): register them with an IP address (Service.Address, or the node's Address), not a host name, 0.0.0.0 or ::, and a port",
		s.total, s.badAddr, s.example)
}

// targetsOf turns the passing instances Consul sent into targets. An
// instance's address is its Service.Address, or its node's Address when that
// is empty, as Consul's DNS interface answers; its port is the service's
// (default) port; its weight is Weights.Passing (every instance listed
// passes its checks), 1 if Consul reports none. Instances without an IP
// address Caddy can dial (see upstreams.ParseAddr) or without a port are
// skipped and counted. Nothing in the list can make it panic.
func targetsOf(entries []*api.ServiceEntry) ([]upstreams.Target, skipped) {
	out := make([]upstreams.Target, 0, len(entries))
	s := skipped{total: len(entries)}
	for _, e := range entries {
		if e == nil || e.Service == nil {
			s.bad("(no service)")
			continue
		}
		host := e.Service.Address
		if host == "" && e.Node != nil {
			host = e.Node.Address
		}
		addr, ok := upstreams.ParseAddr(strings.TrimSuffix(strings.TrimPrefix(host, "["), "]"))
		port := e.Service.DefaultPort()
		if !ok || port < 1 || port > 65535 {
			s.bad(fmt.Sprintf("%s port %d", host, port))
			continue
		}
		weight := float64(e.Service.Weights.Passing)
		if weight < 1 {
			weight = 1
		}
		out = append(out, upstreams.Target{Addr: addr, Port: uint16(port), Weight: weight})
	}
	return out, s
}

func (s *skipped) bad(example string) {
	s.badAddr++
	if s.example == "" {
		s.example = example
	}
}
