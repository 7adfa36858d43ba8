package consul

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
)

// fakeConsul is an httptest stand-in for Consul's /v1/health/service API,
// for unit tests of our side of the long-poll: blocking at an index,
// passing, tags, ACL filtering and refusals as Consul answers them. It does
// not evaluate filter expressions: the integration tests do that with a
// real agent.
type fakeConsul struct {
	t   testing.TB
	srv *httptest.Server

	mu       sync.Mutex
	changed  chan struct{} // closed and replaced on every change
	index    uint64
	services map[string][]*api.ServiceEntry
	// forceIndex, if forced, is the index every answer reports, at once.
	forceIndex uint64
	forced     bool
	// fail answers the next requests with this status and body.
	failCode int
	failBody string
	failN    int
	// tokens, if set, are the tokens that may read; others get an
	// ACL-filtered empty answer, unknown ones 403 "ACL not found".
	tokens  map[string]bool
	known   map[string]bool
	reqs    []*http.Request
	waiting int // requests blocked right now
	// hung, while open, holds every request, as a stopped process does.
	hung chan struct{}
}

// hang holds every request from now on, or (on false) lets them go.
func (f *fakeConsul) hang(on bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	switch {
	case on && f.hung == nil:
		f.hung = make(chan struct{})
	case !on && f.hung != nil:
		close(f.hung)
		f.hung = nil
	}
}

func newFakeConsul(t testing.TB) *fakeConsul {
	f := &fakeConsul{t: t, changed: make(chan struct{}), index: 10, services: map[string][]*api.ServiceEntry{}}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeConsul) addr() string { return strings.TrimPrefix(f.srv.URL, "http://") }

// entry is an instance of service at ip:port with checks in status.
func entry(service, ip string, port int, status string, tags ...string) *api.ServiceEntry {
	return &api.ServiceEntry{
		Node:    &api.Node{Node: "node-" + ip, Address: ip},
		Service: &api.AgentService{ID: fmt.Sprintf("%s-%s-%d", service, ip, port), Service: service, Address: ip, Port: port, Tags: tags, Weights: api.AgentWeights{Passing: 1, Warning: 1}},
		Checks:  api.HealthChecks{{CheckID: "serfHealth", Status: api.HealthPassing}, {CheckID: "service:" + service, Status: status}},
	}
}

// set replaces the instances of service and moves the index on.
func (f *fakeConsul) set(service string, entries ...*api.ServiceEntry) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.services[service] = entries
	f.index++
	close(f.changed)
	f.changed = make(chan struct{})
}

func (f *fakeConsul) failNext(n, code int, body string) {
	f.mu.Lock()
	f.failN, f.failCode, f.failBody = n, code, body
	f.mu.Unlock()
}

// requests returns the requests so far.
func (f *fakeConsul) requests() []*http.Request {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.reqs)
}

func (f *fakeConsul) blocked() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.waiting
}

func (f *fakeConsul) serve(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	hung := f.hung
	f.mu.Unlock()
	if hung != nil {
		select {
		case <-hung:
		case <-r.Context().Done():
			return
		}
	}
	if r.URL.Path == "/v1/status/leader" {
		fmt.Fprint(w, `"127.0.0.1:8300"`)
		return
	}
	name, ok := strings.CutPrefix(r.URL.Path, "/v1/health/service/")
	if !ok {
		http.NotFound(w, r)
		return
	}
	q := r.URL.Query()
	f.mu.Lock()
	f.reqs = append(f.reqs, r.Clone(r.Context()))
	idx, _ := strconv.ParseUint(q.Get("index"), 10, 64)
	if idx > 0 && idx >= f.index && !f.forced {
		wait := time.Minute
		if d, err := time.ParseDuration(q.Get("wait")); err == nil {
			wait = d
		}
		ch := f.changed
		f.waiting++
		f.mu.Unlock()
		select {
		case <-ch:
		case <-time.After(wait):
		case <-r.Context().Done():
		}
		f.mu.Lock()
		f.waiting--
	}
	if f.failN > 0 {
		f.failN--
		code, body := f.failCode, f.failBody
		f.mu.Unlock()
		w.WriteHeader(code)
		fmt.Fprint(w, body)
		return
	}
	tok := r.Header.Get("X-Consul-Token")
	if f.known != nil && !f.known[tok] {
		f.mu.Unlock()
		w.WriteHeader(http.StatusForbidden)
		fmt.Fprint(w, "ACL not found")
		return
	}
	index := f.index
	if f.forced {
		index = f.forceIndex
	}
	all := f.services[name]
	filtered := false
	var out []*api.ServiceEntry
	for _, e := range all {
		if f.tokens != nil && !f.tokens[tok] {
			// Consul v1.14 hides instances from the anonymous token
			// without saying so
			filtered = tok != ""
			continue
		}
		if q.Has("passing") && e.Checks.AggregatedStatus() != api.HealthPassing {
			continue
		}
		if !hasTags(e.Service.Tags, q["tag"]) {
			continue
		}
		out = append(out, e)
	}
	f.mu.Unlock()
	w.Header().Set("X-Consul-Index", strconv.FormatUint(index, 10))
	w.Header().Set("X-Consul-LastContact", "0")
	w.Header().Set("X-Consul-KnownLeader", "true")
	if filtered {
		w.Header().Set("X-Consul-Results-Filtered-By-ACLs", "true")
	}
	if f.tokens != nil || f.known != nil {
		w.Header().Set("X-Consul-Default-ACL-Policy", "deny")
	}
	w.Header().Set("Content-Type", "application/json")
	if out == nil {
		out = []*api.ServiceEntry{}
	}
	_ = json.NewEncoder(w).Encode(out)
}
