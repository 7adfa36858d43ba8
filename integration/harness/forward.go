package harness

import (
	"io"
	"net"
	"sync"
	"testing"
)

// Forwarder forwards the TCP connections it accepts on a loopback port to a
// target, byte for byte. Put in front of a server, it counts a client's
// connections apart from other clients', refuses new ones while closed, and
// cuts the open ones on demand.
type Forwarder struct {
	ln     net.Listener
	target string
	wg     sync.WaitGroup

	mu       sync.Mutex
	closed   bool // new connections are refused
	open     map[net.Conn]struct{}
	accepted int
}

// NewForwarder listens on a free loopback port until the test ends; then
// it cuts the connections still open.
func NewForwarder(t testing.TB, target string) *Forwarder {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &Forwarder{ln: ln, target: target, open: map[net.Conn]struct{}{}}
	f.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			f.wg.Go(func() { f.forward(c) })
		}
	})
	t.Cleanup(func() {
		_ = ln.Close()
		f.SetOpen(false)
		f.Cut()
		f.wg.Wait()
	})
	return f
}

// Port is the loopback port to connect to instead of the target.
func (f *Forwarder) Port() int { return f.ln.Addr().(*net.TCPAddr).Port }

// Accepted counts the connections forwarded so far.
func (f *Forwarder) Accepted() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.accepted
}

// SetOpen refuses new connections (closes them at once) while open is
// false; connections already forwarded stay.
func (f *Forwarder) SetOpen(open bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closed = !open
}

// Cut closes every forwarded connection and returns how many there were;
// new ones are still forwarded.
func (f *Forwarder) Cut() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	for c := range f.open {
		c.Close()
	}
	return len(f.open) / 2
}

// forward copies both ways until either side ends, then closes both.
func (f *Forwarder) forward(c net.Conn) {
	defer c.Close()
	f.mu.Lock()
	closed := f.closed
	f.mu.Unlock()
	if closed {
		return
	}
	u, err := net.Dial("tcp", f.target)
	if err != nil {
		return
	}
	defer u.Close()
	f.mu.Lock()
	if f.closed { // since the dial
		f.mu.Unlock()
		return
	}
	f.open[c], f.open[u] = struct{}{}, struct{}{}
	f.accepted++
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		delete(f.open, c)
		delete(f.open, u)
		f.mu.Unlock()
	}()
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(u, c); done <- struct{}{} }()
	go func() { _, _ = io.Copy(c, u); done <- struct{}{} }()
	<-done
}
