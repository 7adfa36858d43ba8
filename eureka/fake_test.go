package eureka

import (
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
)

// fakeEureka is a Eureka server for unit tests, under /eureka: a registry,
// and the changes since the last delta, which the next delta serves (a real
// server keeps them for minutes; serving each once is enough for tests and
// keeps them deterministic).
type fakeEureka struct {
	*httptest.Server

	mu       sync.Mutex
	apps     map[string]map[string]fakeInstance
	changes  []fakeChange
	user     string // basic auth when set
	password string
	// status, when set for a path, is answered instead.
	status map[string]int
	// loseDelta drops the changes of the next delta but still sends the
	// server's hash code, as when a client misses a delta.
	loseDelta bool
	// hashCode, when set, replaces the hash code of deltas.
	hashCode string

	fulls, deltas int
	accept        []string // Accept headers received
}

type fakeInstance struct {
	id, ip string
	port   int
	status Status
}

type fakeChange struct {
	app    string
	inst   fakeInstance
	action string
}

func newFakeEureka(t testing.TB) *fakeEureka {
	f := &fakeEureka{apps: make(map[string]map[string]fakeInstance), status: make(map[string]int)}
	f.Server = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.Close)
	return f
}

func (f *fakeEureka) base() string { return f.URL + "/eureka" }

func (f *fakeEureka) set(app string, inst fakeInstance) {
	f.mu.Lock()
	defer f.mu.Unlock()
	action := "MODIFIED"
	if f.apps[app] == nil {
		f.apps[app] = make(map[string]fakeInstance)
	}
	if _, ok := f.apps[app][inst.id]; !ok {
		action = "ADDED"
	}
	f.apps[app][inst.id] = inst
	f.changes = append(f.changes, fakeChange{app, inst, action})
}

func (f *fakeEureka) remove(app, id string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	inst, ok := f.apps[app][id]
	if !ok {
		return
	}
	delete(f.apps[app], id)
	if len(f.apps[app]) == 0 {
		delete(f.apps, app)
	}
	f.changes = append(f.changes, fakeChange{app, inst, "DELETED"})
}

func (f *fakeEureka) counts() (fulls, deltas int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.fulls, f.deltas
}

// hash is the server's hash code, computed here independently of the
// client's code.
func (f *fakeEureka) hash() string {
	counts := map[string]int{}
	for _, byID := range f.apps {
		for _, inst := range byID {
			counts[string(inst.status)]++
		}
	}
	keys := make([]string, 0, len(counts))
	for k := range counts {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	s := ""
	for _, k := range keys {
		s += fmt.Sprintf("%s_%d_", k, counts[k])
	}
	return s
}

func instanceJSONOf(app string, inst fakeInstance, action string) map[string]any {
	return map[string]any{
		"instanceId": inst.id, "hostName": inst.ip, "app": app, "ipAddr": inst.ip, "status": string(inst.status),
		"port":       map[string]any{"$": inst.port, "@enabled": "true"},
		"securePort": map[string]any{"$": 443, "@enabled": "false"},
		"metadata":   map[string]any{"@class": "java.util.Collections$EmptyMap"},
		"dataCenterInfo": map[string]any{
			"@class": "com.netflix.appinfo.InstanceInfo$DefaultDataCenterInfo", "name": "MyOwn",
		},
		"lastDirtyTimestamp": "1700000000000", "actionType": action,
	}
}

func (f *fakeEureka) serve(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.accept = append(f.accept, r.Header.Get("Accept"))
	if f.user != "" {
		if u, p, ok := r.BasicAuth(); !ok || u != f.user || p != f.password {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
	}
	if code := f.status[r.URL.Path]; code != 0 {
		w.WriteHeader(code)
		return
	}
	byApp := map[string][]map[string]any{}
	hash := f.hash()
	switch r.URL.Path {
	case "/eureka/apps":
		f.fulls++
		for app, byID := range f.apps {
			for _, inst := range byID {
				byApp[app] = append(byApp[app], instanceJSONOf(app, inst, "ADDED"))
			}
		}
	case "/eureka/apps/delta":
		f.deltas++
		if !f.loseDelta {
			for _, c := range f.changes {
				byApp[c.app] = append(byApp[c.app], instanceJSONOf(c.app, c.inst, c.action))
			}
		}
		f.loseDelta = false
		f.changes = nil
		if f.hashCode != "" {
			hash = f.hashCode
		}
	default:
		http.NotFound(w, r)
		return
	}
	apps := []map[string]any{}
	for _, name := range slices.Sorted(maps.Keys(byApp)) {
		apps = append(apps, map[string]any{"name": name, "instance": byApp[name]})
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"applications": map[string]any{
		"versions__delta": "1", "apps__hashcode": hash, "application": apps,
	}})
}

// ids lists the instances' ids and statuses, for messages and comparisons.
func ids(insts []Instance) string {
	var parts []string
	for _, i := range insts {
		parts = append(parts, i.ID+"="+string(i.Status))
	}
	return strings.Join(parts, ",")
}
