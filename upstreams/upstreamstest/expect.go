package upstreamstest

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"
)

// Eventually polls check every 10ms until it returns nil; after timeout it
// fails tb with check's last error.
func Eventually(tb testing.TB, timeout time.Duration, check func() error) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("after %v: %v", timeout, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Dials lists the dial addresses that src's GetUpstreams returns now.
func Dials(src reverseproxy.UpstreamSource) ([]string, error) {
	ups, err := src.GetUpstreams(nil)
	if err != nil {
		return nil, err
	}
	dials := make([]string, len(ups))
	for i, up := range ups {
		dials[i] = up.Dial
	}
	return dials, nil
}

// ExpectDials is a check, for Eventually, that src serves exactly want, in
// that order.
func ExpectDials(src reverseproxy.UpstreamSource, want ...string) func() error {
	return func() error {
		got, err := Dials(src)
		if err != nil || !slices.Equal(got, want) {
			return fmt.Errorf("upstreams = %v, %v; want %v", got, err, want)
		}
		return nil
	}
}
