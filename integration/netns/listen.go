// Package netns opens listeners inside a named network namespace (one made
// with `ip netns add`) from a process that stays in its own namespace.
package netns

import (
	"fmt"
	"net"
	"os"
	"runtime"

	"golang.org/x/sys/unix"
)

// Listen opens a TCP listener on addr inside the network namespace name. A
// socket belongs to the namespace it was created in, so only the calling
// thread enters the namespace, and only for the socket() call: the rest of
// the process stays where it is.
func Listen(name, addr string) (net.Listener, error) {
	runtime.LockOSThread()
	orig, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		runtime.UnlockOSThread()
		return nil, err
	}
	defer orig.Close()
	target, err := os.Open("/run/netns/" + name)
	if err != nil {
		runtime.UnlockOSThread()
		return nil, err
	}
	defer target.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return nil, fmt.Errorf("entering netns %s: %w", name, err)
	}
	ln, lerr := net.Listen("tcp", addr)
	if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
		// The thread is stuck in the other namespace: keep it locked, so it
		// exits with its goroutine instead of running other code.
		return nil, fmt.Errorf("leaving netns %s: %w", name, err)
	}
	runtime.UnlockOSThread()
	return ln, lerr
}
