// Package harness runs what the integration tests need around the real
// registries: test backends in a network namespace of their own (registries
// refuse loopback endpoint addresses), Caddy in-process, and polling helpers.
package harness

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/caddy-discovery/caddy-discovery/integration/netns"
)

// Netns is a network namespace joined to the root namespace by a veth pair.
// The root end is Gateway; addresses added with AddAddr live inside the
// namespace, where backends listen. Only these addresses receive test traffic.
type Netns struct {
	Name    string
	Gateway netip.Addr // root side of the veth
	prefix  netip.Prefix
	inner   string // veth name inside the namespace

	mu   sync.Mutex
	next netip.Addr
}

var netnsSeq atomic.Int32

// NewNetns creates a namespace with a /24 from 10.251.0.0/16 (IPv4) and a
// /64 from fd51::/16 (IPv6), and removes it when the test ends.
func NewNetns(t testing.TB) *Netns {
	t.Helper()
	seq := netnsSeq.Add(1)
	id := fmt.Sprintf("%d%d", os.Getpid()%10000, seq)
	subnet := freeSubnet(t, seq)
	n := &Netns{
		Name:    "cdt" + id,
		Gateway: netip.AddrFrom4([4]byte{10, 251, subnet, 1}),
		prefix:  netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 251, subnet, 0}), 24),
		inner:   "vn" + id,
	}
	outer := "vh" + id
	n.next = n.Gateway.Next()
	t.Cleanup(func() {
		_ = exec.Command("ip", "netns", "del", n.Name).Run()
		_ = exec.Command("ip", "link", "del", outer).Run()
	})
	v6gw := fmt.Sprintf("fd51:0:0:%x::1/64", subnet)
	for _, args := range [][]string{
		{"netns", "add", n.Name},
		{"link", "add", outer, "type", "veth", "peer", "name", n.inner},
		{"link", "set", n.inner, "netns", n.Name},
		{"addr", "add", n.Gateway.String() + "/24", "dev", outer},
		{"-6", "addr", "add", v6gw, "dev", outer, "nodad"},
		{"link", "set", outer, "up"},
		{"-n", n.Name, "link", "set", "lo", "up"},
		{"-n", n.Name, "link", "set", n.inner, "up"},
	} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	return n
}

// freeSubnet picks the third byte of a 10.251.x.0/24 that no route uses yet,
// so that test processes running side by side get apart subnets.
func freeSubnet(t testing.TB, seq int32) byte {
	t.Helper()
	start := (os.Getpid()*7 + int(seq)) % 250
	for i := range 250 {
		x := byte((start+i)%250 + 1)
		out, err := exec.Command("ip", "-4", "route", "show", fmt.Sprintf("10.251.%d.0/24", x)).Output()
		if err != nil {
			t.Fatalf("ip route show: %v", err)
		}
		if len(strings.TrimSpace(string(out))) == 0 {
			return x
		}
	}
	t.Fatal("no free /24 left in 10.251.0.0/16")
	return 0
}

// AddAddr adds the next free IPv4 address of the namespace's subnet inside it.
func (n *Netns) AddAddr(t testing.TB) netip.Addr {
	t.Helper()
	n.mu.Lock()
	a := n.next
	n.next = a.Next()
	n.mu.Unlock()
	if !n.prefix.Contains(a) {
		t.Fatalf("netns %s: out of addresses", n.Name)
	}
	n.ip(t, "addr", "add", a.String()+"/24", "dev", n.inner)
	return a
}

// AddAddr6 adds an IPv6 address inside the namespace, in the veth's /64.
func (n *Netns) AddAddr6(t testing.TB) netip.Addr {
	t.Helper()
	n.mu.Lock()
	last := n.next.As4()[3]
	n.next = n.next.Next()
	n.mu.Unlock()
	seq := n.Gateway.As4()[2]
	a := netip.MustParseAddr(fmt.Sprintf("fd51:0:0:%x::%x", seq, last))
	n.ip(t, "-6", "addr", "add", a.String()+"/64", "dev", n.inner, "nodad")
	return a
}

// AddHostRoute puts addr inside the namespace and routes it there from the
// root namespace, for an address outside the namespace's subnet (such as a
// Service's cluster IP, which kube-proxy would otherwise handle).
func (n *Netns) AddHostRoute(t testing.TB, addr netip.Addr) {
	t.Helper()
	n.ip(t, "addr", "add", addr.String()+"/32", "dev", n.inner)
	args := []string{"route", "add", addr.String() + "/32", "dev", "vh" + strings.TrimPrefix(n.inner, "vn")}
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

func (n *Netns) ip(t testing.TB, args ...string) {
	t.Helper()
	args = append([]string{"-n", n.Name}, args...)
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// Listen opens a TCP listener on addr inside the namespace.
func (n *Netns) Listen(addr string) (net.Listener, error) {
	return netns.Listen(n.Name, addr)
}

// Backend is an HTTP server inside a namespace that answers every request
// with its name.
type Backend struct {
	Name string
	Addr netip.AddrPort
	srv  *http.Server
	done chan struct{}
}

// Backend starts an HTTP server named name on addr:port inside the namespace;
// it stops when the test ends or on Close.
func (n *Netns) Backend(t testing.TB, name string, addr netip.Addr, port uint16) *Backend {
	t.Helper()
	ap := netip.AddrPortFrom(addr, port)
	ln, err := n.Listen(ap.String())
	if err != nil {
		t.Fatalf("backend %s: %v", name, err)
	}
	b := &Backend{Name: name, Addr: ap, done: make(chan struct{})}
	b.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Backend", name)
		fmt.Fprint(w, name)
	})}
	go func() {
		defer close(b.done)
		_ = b.srv.Serve(ln)
	}()
	t.Cleanup(b.Close)
	return b
}

// Backends starts a backend for each of names, each on an address of its
// own in the namespace and all on port, and returns their addresses in the
// order of names.
func (n *Netns) Backends(t testing.TB, port uint16, names ...string) []netip.AddrPort {
	t.Helper()
	addrs := make([]netip.AddrPort, len(names))
	for i, name := range names {
		addrs[i] = n.Backend(t, name, n.AddAddr(t), port).Addr
	}
	return addrs
}

// Close stops the backend; it is safe to call more than once.
func (b *Backend) Close() {
	_ = b.srv.Close()
	<-b.done
}
