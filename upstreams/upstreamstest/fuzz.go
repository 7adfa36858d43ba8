package upstreamstest

import (
	"encoding/binary"
	"fmt"
	"math"
	"net"
	"net/netip"
	"strconv"
	"strings"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"
)

// CheckDial reports why dial is not an address that a registry-fed source
// may hand to reverse_proxy: it must be host:port as net.JoinHostPort writes
// it, the host an IP address that is neither unspecified (0.0.0.0 and ::
// reach the gateway itself), nor zoned (a zone is an interface of the host
// that registered the address, not of the gateway), nor IPv4-mapped IPv6
// (written as plain IPv4, so that one backend has one dial address), and
// the port a number from 1 to 65535.
func CheckDial(dial string) error {
	host, port, err := net.SplitHostPort(dial)
	if err != nil {
		return fmt.Errorf("dial %q: %w", dial, err)
	}
	addr, err := netip.ParseAddr(host)
	switch {
	case err != nil:
		return fmt.Errorf("dial %q: host: %w", dial, err)
	case addr.IsUnspecified():
		return fmt.Errorf("dial %q: unspecified address", dial)
	case addr.Zone() != "":
		return fmt.Errorf("dial %q: zoned address", dial)
	case addr.Is4In6():
		return fmt.Errorf("dial %q: IPv4-mapped address; want plain IPv4", dial)
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 1 || n > 65535 || strconv.Itoa(n) != port {
		return fmt.Errorf("dial %q: port %q is not a number from 1 to 65535", dial, port)
	}
	if canonical := net.JoinHostPort(addr.String(), port); canonical != dial {
		return fmt.Errorf("dial %q is not written canonically (%q)", dial, canonical)
	}
	return nil
}

// CheckUpstreams checks every upstream's dial address with CheckDial.
func CheckUpstreams(ups []*reverseproxy.Upstream) error {
	for _, u := range ups {
		if u == nil {
			return fmt.Errorf("nil upstream in %d", len(ups))
		}
		if err := CheckDial(u.Dial); err != nil {
			return err
		}
	}
	return nil
}

// NamesField reports whether msg starts with one of the config fields,
// followed by ':' or ' ': how the sources' configuration errors say which
// field to fix.
func NamesField(msg string, fields ...string) bool {
	for _, f := range fields {
		if rest, ok := strings.CutPrefix(msg, f); ok && (strings.HasPrefix(rest, ":") || strings.HasPrefix(rest, " ")) {
			return true
		}
	}
	return false
}

// Stream hands out values decoded from a fuzzer's bytes, for fuzz targets
// that build registry objects from primitives. Once the bytes run out, every
// value is zero (false, the first choice).
type Stream []byte

// Byte returns the next byte.
func (s *Stream) Byte() byte {
	if len(*s) == 0 {
		return 0
	}
	b := (*s)[0]
	*s = (*s)[1:]
	return b
}

// Bool returns the next byte's lowest bit.
func (s *Stream) Bool() bool { return s.Byte()&1 == 1 }

// Intn returns a number in [0, n) from the next byte; n must be in 1-256.
func (s *Stream) Intn(n int) int { return int(s.Byte()) % n }

// Pick returns one of choices.
func (s *Stream) Pick(choices ...string) string { return choices[s.Intn(len(choices))] }

// Uint64 returns the next 8 bytes, big-endian, zero-padded.
func (s *Stream) Uint64() uint64 {
	var b [8]byte
	for i := range b {
		b[i] = s.Byte()
	}
	return binary.BigEndian.Uint64(b[:])
}

// interestingInts are the numbers around the edges of a port's range and
// of the integer types that carry one.
var interestingInts = []int64{
	0, 1, 80, 443, 8080, 30080, 32767, 65535, 65536, 65537, 65535 + 80, -1, -80, -65535,
	math.MaxInt16, math.MaxUint16 + 1, math.MaxInt32, math.MinInt32, math.MaxUint32, math.MaxUint32 + 80,
	math.MaxInt64, math.MinInt64,
}

// Int64 returns, mostly, one of a few numbers at the edges of port ranges
// and integer types, else any 64-bit number.
func (s *Stream) Int64() int64 {
	if b := s.Byte(); b < 224 {
		return interestingInts[int(b)%len(interestingInts)]
	}
	return int64(s.Uint64())
}

// Int32 is Int64 truncated to 32 bits, as a field of that type would hold it.
func (s *Stream) Int32() int32 { return int32(s.Int64()) }

// interestingFloats are the weights that break arithmetic.
var interestingFloats = []float64{
	0, 1, 0.5, 100, -1, math.NaN(), math.Inf(1), math.Inf(-1), math.SmallestNonzeroFloat64, math.MaxFloat64,
	1e-7, 1e6, 1e6 + 1, math.Copysign(0, -1),
}

// Float64 returns, mostly, one of a few weights that break arithmetic, else
// any float64 bit pattern.
func (s *Stream) Float64() float64 {
	if b := s.Byte(); b < 224 {
		return interestingFloats[int(b)%len(interestingFloats)]
	}
	return math.Float64frombits(s.Uint64())
}
