package harness

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// CheckPorts returns an error for the first port in the kernel's range of
// ephemeral ports (net.ipv4.ip_local_port_range, 32768-60999 by default).
// The tests give their servers fixed ports; one in that range may be held,
// as the local end of an outgoing connection, at the moment the server
// binds it (a test's request loop opens thousands), and the server then
// fails to start.
func CheckPorts(ports ...int) error {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return nil // not Linux: nothing to check against
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return nil
	}
	lo, err1 := strconv.Atoi(f[0])
	hi, err2 := strconv.Atoi(f[1])
	if err1 != nil || err2 != nil {
		return nil
	}
	for _, p := range ports {
		if p >= lo && p <= hi {
			return fmt.Errorf("port %d is in the kernel's ephemeral port range %d-%d, where an outgoing connection may hold it when the server starts: give the server a port below %d", p, lo, hi, lo)
		}
	}
	return nil
}
