package upstreams

import "net/netip"

// ParseAddr reads a backend's IP address as a registry reports it, and
// reports whether the gateway can dial it: an IP address that is not
// unspecified (0.0.0.0 or ::, which reach the gateway itself) and has no
// zone (a zone names a network interface of the host that registered the
// address, not of the gateway; and its text could break the dial address).
// An IPv4-mapped IPv6 address comes back as IPv4, so that one backend has
// one dial address.
func ParseAddr(s string) (netip.Addr, bool) {
	addr, err := netip.ParseAddr(s)
	if err != nil || addr.Zone() != "" {
		return netip.Addr{}, false
	}
	addr = addr.Unmap()
	if addr.IsUnspecified() {
		return netip.Addr{}, false
	}
	return addr, true
}
