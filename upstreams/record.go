package upstreams

import (
	"errors"
	"fmt"
	"math"
	"net/netip"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Record is one instance as a registrar's format describes it, decoded:
// what Take makes a Target of, for the sources that decode registrar
// formats (etcd, zookeeper).
type Record struct {
	Host     string // an IP address (IPv6 in brackets or not) or a DNS name, as registered
	Port     int
	Weight   float64 // 0: none given
	Metadata map[string]string
}

// Take appends the target of rec to out if it is usable and selected: its
// host an IP address the gateway can dial (see ParseAddr) or a DNS name,
// which Caddy resolves when it connects (never here, never per request);
// its port from 1 to 65535; every pair of want in its metadata. Otherwise it
// counts why not, with name (such as `key "a/1"`) in the example. A target
// without a weight weighs 1.
func (s *Skipped) Take(out []Target, name string, rec Record, want map[string]string) []Target {
	t, err := rec.target()
	s.seen++
	if HasMetadata(rec.Metadata, want) {
		s.marked++
	}
	switch {
	case err != nil:
		s.AddExample("without an IP address or host name Caddy can dial", fmt.Sprintf("%s: %v", name, err))
	case !HasMetadata(rec.Metadata, want):
		s.Add("not matching the metadata")
	default:
		out = append(out, t)
	}
	return out
}

func (rec Record) target() (Target, error) {
	if rec.Port < 1 || rec.Port > 65535 {
		return Target{}, fmt.Errorf("port %d is not from 1 to 65535", rec.Port)
	}
	t := Target{Port: uint16(rec.Port), Weight: max(rec.Weight, 1)}
	host := rec.Host
	if len(host) > 2 && host[0] == '[' && host[len(host)-1] == ']' {
		host = host[1 : len(host)-1]
	}
	if _, err := netip.ParseAddr(host); err == nil {
		addr, ok := ParseAddr(host)
		if !ok {
			return Target{}, fmt.Errorf("%q is not an address the gateway can dial (unspecified, or with a zone)", Clip(rec.Host))
		}
		t.Addr = addr
		return t, nil
	}
	if !IsHostName(host) {
		return Target{}, fmt.Errorf("%q is neither an IP address nor a host name", Clip(rec.Host))
	}
	t.Host = strings.ToLower(strings.TrimSuffix(host, "."))
	return t, nil
}

// IsHostName reports whether s is a DNS name Caddy can dial: labels of
// letters, digits, '-' and '_' (not starting or ending with '-'), 1 to 63
// characters each, 253 in all, an optional final dot, and a last label
// that is not all digits (so that a mangled IPv4 address is no name).
func IsHostName(s string) bool {
	s = strings.TrimSuffix(s, ".")
	if s == "" || len(s) > 253 {
		return false
	}
	labels := strings.Split(s, ".")
	for _, l := range labels {
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return false
		}
		for _, r := range l {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
				return false
			}
		}
	}
	return strings.Trim(labels[len(labels)-1], "0123456789") != ""
}

// JSONMetadata reads a metadata object as a registrar wrote it in JSON:
// its string values, and its numbers and booleans as text; other values
// (objects, arrays, null) are left out. nil when v is not an object.
func JSONMetadata(v any) map[string]string {
	obj, ok := v.(map[string]any)
	if !ok {
		return nil
	}
	md := make(map[string]string, len(obj))
	for k, x := range obj {
		switch x := x.(type) {
		case string:
			md[k] = x
		case float64:
			md[k] = strconv.FormatFloat(x, 'f', -1, 64)
		case bool:
			md[k] = strconv.FormatBool(x)
		}
	}
	return md
}

// ParsePort reads a port as a registrar wrote it: a number from 1 to
// 65535.
func ParsePort(s string) (int, error) {
	p, err := strconv.Atoi(s)
	if err != nil || p < 1 || p > 65535 {
		return 0, errors.New("the port is not a number in 1-65535")
	}
	return p, nil
}

// ParseWeight reads a weight as a registrar wrote it: a finite number above
// 0; 0 for none, or one that is not.
func ParseWeight(s string) float64 {
	w, err := strconv.ParseFloat(s, 64)
	if err != nil || !(w > 0) || math.IsInf(w, 0) {
		return 0
	}
	return w
}

// Clip shortens what a registry sent for a message: its first 60 bytes
// (ending on a whole character), then "…".
func Clip(s string) string {
	if len(s) <= 60 {
		return s
	}
	i := 60
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i] + "…"
}
