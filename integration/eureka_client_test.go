//go:build integration

package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
	"go.uber.org/zap/zaptest"

	"github.com/caddy-discovery/caddy-discovery/eureka"
	"github.com/caddy-discovery/caddy-discovery/integration/harness"
)

// The Polaris of the Eureka client test: its Nacos port (gRPC +1000,
// Polaris's own gRPC +2000) and its Eureka API's port, apart from the other
// tests' servers.
const (
	eurekaPolarisNacosPort = 14848
	eurekaPolarisPort      = 14761
)

// eurekaRegistrar registers instances through the Eureka API as a Java
// eureka-client does (POST /apps/{app}), heartbeats them every second
// (PUT /apps/{app}/{id}) until they are cancelled or dropped, and changes
// their status (PUT /apps/{app}/{id}/status?value=...).
type eurekaRegistrar struct {
	t    testing.TB
	base string // http://127.0.0.1:port/eureka
	app  string

	http *http.Client // with its own transport, closed by stop

	mu      sync.Mutex
	beating map[string]bool
	ctx     context.Context
	cancel  context.CancelFunc
	done    sync.WaitGroup
}

func newEurekaRegistrar(t testing.TB, base, app string) *eurekaRegistrar {
	r := &eurekaRegistrar{
		t: t, base: base, app: app, beating: make(map[string]bool),
		http: &http.Client{Timeout: 5 * time.Second, Transport: http.DefaultTransport.(*http.Transport).Clone()},
	}
	r.ctx, r.cancel = context.WithCancel(context.Background())
	r.done.Add(1)
	go r.heartbeat()
	t.Cleanup(r.stop)
	return r
}

func (r *eurekaRegistrar) stop() {
	r.cancel()
	r.done.Wait()
	r.http.CloseIdleConnections()
}

func (r *eurekaRegistrar) do(method, path, contentType string, body []byte) (int, error) {
	req, err := http.NewRequestWithContext(r.ctx, method, r.base+path, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := r.http.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, nil
}

func (r *eurekaRegistrar) must(method, path string, body []byte, want ...int) {
	r.t.Helper()
	code, err := r.do(method, path, "application/json", body)
	if err != nil {
		r.t.Fatalf("%s %s: %v", method, path, err)
	}
	for _, w := range want {
		if code == w {
			return
		}
	}
	r.t.Fatalf("%s %s: HTTP %d, want %v", method, path, code, want)
}

// register registers an instance and heartbeats it every second.
func (r *eurekaRegistrar) register(id, ip string, port int) {
	r.t.Helper()
	body, _ := json.Marshal(map[string]any{"instance": map[string]any{
		"instanceId": id, "hostName": ip, "app": r.app, "ipAddr": ip, "status": "UP",
		"port":       map[string]any{"$": port, "@enabled": "true"},
		"securePort": map[string]any{"$": 443, "@enabled": "false"},
		"dataCenterInfo": map[string]any{
			"@class": "com.netflix.appinfo.InstanceInfo$DefaultDataCenterInfo", "name": "MyOwn",
		},
		// Polaris expires an instance 3 heartbeat TTLs after its last
		// heartbeat, the TTL being min(renewal interval, duration/3): 6 s.
		"leaseInfo": map[string]any{"renewalIntervalInSecs": 2, "durationInSecs": 6},
		"metadata":  map[string]any{"@class": "java.util.Collections$EmptyMap", "zone": "z1"},
	}})
	r.must(http.MethodPost, "/apps/"+r.app, body, http.StatusNoContent)
	r.mu.Lock()
	r.beating[id] = true
	r.mu.Unlock()
}

func (r *eurekaRegistrar) setStatus(id, status string) {
	r.t.Helper()
	r.must(http.MethodPut, "/apps/"+r.app+"/"+id+"/status?value="+status, nil, http.StatusOK)
}

// cancelInstance deregisters an instance, as an instance shutting down does.
func (r *eurekaRegistrar) cancelInstance(id string) {
	r.t.Helper()
	r.stopBeating(id)
	r.must(http.MethodDelete, "/apps/"+r.app+"/"+id, nil, http.StatusOK)
}

// stopBeating stops an instance's heartbeats, as when it crashes.
func (r *eurekaRegistrar) stopBeating(id string) {
	r.mu.Lock()
	delete(r.beating, id)
	r.mu.Unlock()
}

func (r *eurekaRegistrar) heartbeat() {
	defer r.done.Done()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-r.ctx.Done():
			return
		case <-tick.C:
		}
		r.mu.Lock()
		var ids []string
		for id := range r.beating {
			ids = append(ids, id)
		}
		r.mu.Unlock()
		for _, id := range ids {
			if code, err := r.do(http.MethodPut, "/apps/"+r.app+"/"+id, "", nil); err == nil && code != http.StatusOK {
				r.t.Logf("heartbeat of %s: HTTP %d", id, code)
			}
		}
	}
}

// eurekaTap sits between the client and the server: it counts full fetches
// and deltas, and can tamper with the next delta.
type eurekaTap struct {
	next          *http.Transport
	fulls, deltas atomic.Int32
	failed        atomic.Int32 // requests that got no answer
	// forceHash replaces the next delta's apps__hashcode.
	forceHash atomic.Bool
	// dropFor empties the next delta that carries this instance, but
	// keeps its hash code: the delta is lost to the client. (Polaris sends
	// every change of the last minute in each delta, so the next delta
	// with changes is not necessarily the one with the instance.)
	dropFor atomic.Pointer[string]
}

func (tap *eurekaTap) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := tap.next.RoundTrip(req)
	if err != nil {
		tap.failed.Add(1)
	}
	if err != nil || resp.StatusCode != http.StatusOK {
		return resp, err
	}
	switch {
	case strings.HasSuffix(req.URL.Path, "/apps"):
		tap.fulls.Add(1)
		return resp, nil
	case !strings.HasSuffix(req.URL.Path, "/apps/delta"):
		return resp, nil
	}
	tap.deltas.Add(1)
	if !tap.forceHash.Load() && tap.dropFor.Load() == nil {
		return resp, nil
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	var doc map[string]map[string]any
	if err := json.Unmarshal(body, &doc); err != nil {
		return nil, fmt.Errorf("tap: %w", err)
	}
	apps := doc["applications"]
	switch {
	case tap.forceHash.CompareAndSwap(true, false):
		apps["apps__hashcode"] = "FORCED_1_"
	default:
		if id := tap.dropFor.Load(); id != nil && bytes.Contains(body, []byte(fmt.Sprintf("%q", *id))) && tap.dropFor.CompareAndSwap(id, nil) {
			apps["application"] = []any{}
		}
	}
	body, _ = json.Marshal(doc)
	resp.Body = io.NopCloser(bytes.NewReader(body))
	resp.ContentLength = int64(len(body))
	resp.Header.Del("Content-Length")
	return resp, nil
}

// eurekaSubscriber records the updates of one subscription.
type eurekaSubscriber struct {
	mu      sync.Mutex
	last    eureka.Update
	updates int
	changed chan struct{}
}

func (s *eurekaSubscriber) update(u eureka.Update) {
	s.mu.Lock()
	s.last, s.updates = u, s.updates+1
	s.mu.Unlock()
	select {
	case s.changed <- struct{}{}:
	default:
	}
}

func (s *eurekaSubscriber) state() (eureka.Update, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.last, s.updates
}

// describe writes instances as "id=STATUS@ip:port,...", sorted by id.
func describe(insts []eureka.Instance) string {
	var parts []string
	for _, i := range insts {
		parts = append(parts, fmt.Sprintf("%s=%s@%s:%d", i.ID, i.Status, i.IPAddr, i.Port.Number))
	}
	return strings.Join(parts, ",")
}

// await waits until the subscriber's instances are want, and returns how long
// that took.
func (s *eurekaSubscriber) await(t *testing.T, what, want string) time.Duration {
	t.Helper()
	start := time.Now()
	deadline := time.After(45 * time.Second)
	for {
		u, _ := s.state()
		if u.Err == nil && describe(u.Instances) == want {
			d := time.Since(start).Round(time.Millisecond)
			t.Logf("%s: the subscriber had %s %v later", what, want, d)
			return d
		}
		select {
		case <-s.changed:
		case <-time.After(100 * time.Millisecond):
		case <-deadline:
			t.Fatalf("%s: the subscriber has %q (error %v), want %q", what, describe(u.Instances), u.Err, want)
		}
	}
}

// TestEurekaClient follows a real Eureka-protocol server (Polaris's Eureka
// API): instances registered, heartbeated, set OUT_OF_SERVICE, cancelled and
// left without heartbeats reach a subscriber through deltas; a delta whose
// hash code does not match the copy, and a lost delta, each make the poller
// fetch the whole registry, which repairs the copy. The first server of the
// set does not answer: the client fails over to the second and stays there.
// A server URL without the API's path prefix is explained.
func TestEurekaClient(t *testing.T) {
	ignore := goleak.IgnoreCurrent()
	p := &polaris{dir: t.TempDir(), port: eurekaPolarisNacosPort}
	p.script(t, "start-polaris.sh", fmt.Sprintf("EUREKA_PORT=%d", eurekaPolarisPort))
	t.Cleanup(func() { p.stop(t) })
	base := fmt.Sprintf("http://127.0.0.1:%d/eureka", eurekaPolarisPort)

	// Without /eureka, the server answers 404 and the error names the fix.
	bare, err := eureka.NewClient(eureka.Config{Servers: []string{fmt.Sprintf("http://127.0.0.1:%d", eurekaPolarisPort)}})
	if err != nil {
		t.Fatal(err)
	}
	_, err = bare.Apps(t.Context())
	if want := fmt.Sprintf("or http://127.0.0.1:%d/eureka (Spring Cloud, Polaris)", eurekaPolarisPort); err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("without the path prefix: %v\nwant it to suggest %q", err, want)
	}
	bare.CloseIdleConnections()

	reg := newEurekaRegistrar(t, base, "WEB")
	reg.register("web-1", "127.0.0.11", 8081)
	reg.register("web-2", "127.0.0.12", 8082)

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "http://" + l.Addr().String() + "/eureka"
	l.Close()
	tap := &eurekaTap{next: http.DefaultTransport.(*http.Transport).Clone()}
	client, err := eureka.NewClient(eureka.Config{
		Servers:   []string{dead, base},
		Timeout:   2 * time.Second,
		Transport: tap,
		Logger:    zaptest.NewLogger(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	poller := eureka.NewPoller(client, eureka.PollerOptions{Interval: time.Second, Logger: zaptest.NewLogger(t)})
	sub := &eurekaSubscriber{changed: make(chan struct{}, 1)}
	poller.Subscribe("web", sub.update)
	ctx, stopPolling := context.WithCancel(context.Background())
	polling := make(chan struct{})
	go func() {
		defer close(polling)
		poller.Run(ctx)
	}()
	defer func() {
		stopPolling()
		<-polling
		reg.stop()
		tap.next.CloseIdleConnections()
		goleak.VerifyNone(t, ignore)
	}()

	sub.await(t, "registered web-1 and web-2", "web-1=UP@127.0.0.11:8081,web-2=UP@127.0.0.12:8082")
	u, _ := sub.state()
	if i := u.Instances[0]; i.App != "WEB" || i.HostName != "127.0.0.11" || i.Metadata["zone"] != "z1" ||
		i.SecurePort != (eureka.Port{Number: 443}) || !i.Port.Enabled {
		t.Errorf("web-1 as the subscriber has it: %+v", i)
	}
	fulls := tap.fulls.Load()

	reg.setStatus("web-1", "OUT_OF_SERVICE")
	sub.await(t, "web-1 set OUT_OF_SERVICE", "web-1=OUT_OF_SERVICE@127.0.0.11:8081,web-2=UP@127.0.0.12:8082")
	reg.setStatus("web-1", "UP")
	sub.await(t, "web-1 set UP again", "web-1=UP@127.0.0.11:8081,web-2=UP@127.0.0.12:8082")
	if now := tap.fulls.Load(); now != fulls {
		t.Errorf("%d full fetches for status changes; deltas should have done", now-fulls)
	}
	t.Logf("after %d deltas and %d full fetches, heartbeats kept both instances", tap.deltas.Load(), tap.fulls.Load())

	// A delta whose hash code does not match the copy: a full fetch, and
	// the subscriber hears nothing, as nothing changed.
	_, updates := sub.state()
	tap.forceHash.Store(true)
	if !harness.WaitFor(15*time.Second, func() bool { return tap.fulls.Load() > fulls && !tap.forceHash.Load() }) {
		t.Fatal("no full fetch within 15s of a delta with a forced hash code mismatch")
	}
	if _, now := sub.state(); now != updates {
		t.Errorf("%d updates after a full fetch that changed nothing", now-updates)
	}

	// A lost delta: web-3's registration never reaches the copy through a
	// delta, the hash codes differ, and the full fetch brings web-3.
	fulls = tap.fulls.Load()
	web3 := "web-3"
	tap.dropFor.Store(&web3)
	reg.register("web-3", "127.0.0.13", 8083)
	sub.await(t, "registered web-3, its delta lost", "web-1=UP@127.0.0.11:8081,web-2=UP@127.0.0.12:8082,web-3=UP@127.0.0.13:8083")
	if tap.dropFor.Load() != nil {
		t.Error("web-3 arrived without its delta being dropped")
	}
	if tap.fulls.Load() == fulls {
		t.Error("no full fetch after the lost delta")
	}

	reg.cancelInstance("web-2")
	sub.await(t, "web-2 cancelled", "web-1=UP@127.0.0.11:8081,web-3=UP@127.0.0.13:8083")

	reg.stopBeating("web-3")
	sub.await(t, "web-3's heartbeats stopped", "web-1=UP@127.0.0.11:8081")

	if u, _ := sub.state(); u.Err != nil {
		t.Errorf("the last update has an error: %v", u.Err)
	}
	// Only the first request went to the dead server.
	if n := tap.failed.Load(); n != 1 {
		t.Errorf("%d requests went unanswered; after failing over once the client should stay with the live server", n)
	}
	t.Logf("%d deltas and %d full fetches in all", tap.deltas.Load(), tap.fulls.Load())
}
