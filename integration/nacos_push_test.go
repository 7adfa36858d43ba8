//go:build integration

package integration

import (
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/caddy-discovery/caddy-discovery/integration/harness"
	"github.com/caddy-discovery/caddy-discovery/upstreams"
)

// TestNacosPushOutsideDefaults: with the periodic re-read turned off, the
// register, weight changes (weight 0 included) and deregister of a service
// in a non-default group of a non-public namespace reach Caddy by the
// server's push alone, each within 3 s. Polaris v1.18.1 pushed changes of
// DEFAULT_GROUP services only (fix 4 in polaris-v1.18.1.patch).
func TestNacosPushOutsideDefaults(t *testing.T) {
	const (
		namespace, group, service = "pushns", "pushgrp", "push"
		within                    = 3 * time.Second // the server pushes ~1 s after a change
	)
	p := sharedPolaris(t)
	n := harness.NewNetns(t)
	reg := newRegistrar(t, p, namespace)
	a, b := n.AddAddr(t), n.AddAddr(t)
	n.Backend(t, "a", a, 8080)
	n.Backend(t, "b", b, 8080)
	ia, ib := up(group, service, a, 8080), up(group, service, b, 8080)
	dialA, dialB := netip.AddrPortFrom(a, 8080).String(), netip.AddrPortFrom(b, 8080).String()
	reg.put(ia)
	// the first list comes from Subscribe only if the server lists a by
	// then (its cache refreshes every second); later, only pushes can bring it
	waitListed(t, p, namespace, group, service, dialA)
	t.Cleanup(func() {
		if t.Failed() {
			logPushes(t, p, namespace)
		}
	})

	// reconcile_interval < 0: no periodic re-read, so after the first list
	// (the Subscribe answer) only the server's pushes change what Caddy sees
	app := fmt.Sprintf(`"nacos": {"servers": {"default": {"addresses": ["127.0.0.1:%d"], "reconcile_interval": "-1s"}}}`, p.port)
	src := map[string]any{"service": service, "group": group, "namespace": namespace}
	cd := harness.StartCaddy(t, nacosCaddyPort, nacosProxy(src), app)
	expectPushed(t, cd, 10*time.Second, "first list", map[string]float64{dialA: 1}, "a")

	type change struct {
		name     string
		do       func()
		weights  map[string]float64 // dial -> weight in the admin dump
		backends []string
	}
	for _, c := range []change{
		{"register b", func() { reg.put(ib) }, map[string]float64{dialA: 1, dialB: 1}, []string{"a", "b"}},
		{"weight b 1->3", func() { ib.weight = 3; reg.put(ib) }, map[string]float64{dialA: 1, dialB: 3}, []string{"a", "b"}},
		{"weight b 3->0", func() { ib.weight = 0; reg.put(ib) }, map[string]float64{dialA: 1}, []string{"a"}},
		{"weight b 0->2", func() { ib.weight = 2; reg.put(ib) }, map[string]float64{dialA: 1, dialB: 2}, []string{"a", "b"}},
		{"deregister a", func() { reg.remove(ia) }, map[string]float64{dialB: 2}, []string{"b"}},
	} {
		c.do()
		expectPushed(t, cd, within, c.name, c.weights, c.backends...)
	}
}

// expectPushed polls until the admin dump lists exactly the nacos targets
// with the given weights and requests reach exactly the given backends, and
// logs how long that took.
func expectPushed(t *testing.T, cd *harness.Caddy, timeout time.Duration, name string, weights map[string]float64, backends ...string) {
	t.Helper()
	start := time.Now()
	harness.Eventually(t, timeout, func() error {
		var got map[string]float64
		for _, e := range upstreams.Dump() {
			if e.Source != "nacos" {
				continue
			}
			if got != nil {
				return fmt.Errorf("%s: more than one nacos source in the admin dump", name)
			}
			got = map[string]float64{}
			for _, u := range e.Upstreams {
				got[u.Dial] = u.Weight
			}
		}
		if !maps.Equal(got, weights) {
			return fmt.Errorf("%s: admin dump has targets %v, want %v", name, got, weights)
		}
		want := slices.Sorted(slices.Values(backends))
		if spread := cd.Spread(6 * len(backends)); !slices.Equal(harness.Names(spread), want) {
			return fmt.Errorf("%s: requests reached %v, want exactly %v", name, spread, want)
		}
		return nil
	})
	t.Logf("%-14s followed in %v", name, time.Since(start).Round(time.Millisecond))
}

// waitListed polls the server's Nacos v1 HTTP API until it lists exactly the
// given instances of the service.
func waitListed(t *testing.T, p *polaris, namespace, group, service string, dials ...string) {
	t.Helper()
	q := url.Values{"namespaceId": {namespace}, "serviceName": {group + "@@" + service}}
	u := fmt.Sprintf("http://127.0.0.1:%d/nacos/v1/ns/instance/list?%s", p.port, q.Encode())
	want := slices.Sorted(slices.Values(dials))
	harness.Eventually(t, 10*time.Second, func() error {
		resp, err := http.Get(u)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		var list struct {
			Hosts []struct {
				IP   string `json:"ip"`
				Port uint16 `json:"port"`
			} `json:"hosts"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&list); err != nil {
			return fmt.Errorf("decoding %s: %w", u, err)
		}
		var got []string
		for _, h := range list.Hosts {
			addr, err := netip.ParseAddr(h.IP)
			if err != nil {
				return err
			}
			got = append(got, netip.AddrPortFrom(addr, h.Port).String())
		}
		if slices.Sort(got); !slices.Equal(got, want) {
			return fmt.Errorf("the server lists %v, want %v", got, want)
		}
		return nil
	})
}

// logPushes logs the server's push center lines about the namespace, to tell
// a push never sent from one not applied.
func logPushes(t *testing.T, p *polaris, namespace string) {
	b, err := os.ReadFile(filepath.Join(p.dir, "log", "runtime", "nacos-apiserver.log"))
	if err != nil {
		t.Logf("reading the server's log: %v", err)
		return
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.Contains(line, "PushCenter") && strings.Contains(line, namespace) {
			t.Logf("polaris: %s", line)
		}
	}
}
