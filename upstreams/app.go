package upstreams

import (
	"fmt"
	"maps"
	"slices"
	"sync"
)

// What every source's app (consul, eureka, k8s, nacos) does alike: it holds
// named connections, checks them once, picks the one a source uses, and
// starts what this config's sources use. Each app keeps its own docs and
// error texts; only the steps are here.

// DefaultName is the name of the connection that a source without a
// connection name, and without connection fields of its own, uses if its
// app defines one by that name.
const DefaultName = "default"

// CheckNamed checks the named connections of an app at Provision, in name
// order: each name by CheckName, no null entry (empty is its error, e.g.
// "empty server"), each connection by its Validate. kind is what the app
// calls one ("server", "cluster"); errors start with the JSON field, its
// plural ("servers: dc2: ...").
func CheckNamed[T interface{ Validate() error }](kind, empty string, named map[string]*T) error {
	for _, name := range slices.Sorted(maps.Keys(named)) {
		if err := CheckName(kind, name); err != nil {
			return fmt.Errorf("%ss: %w", kind, err)
		}
		c := named[name]
		if c == nil {
			return fmt.Errorf("%ss: %s: %s", kind, name, empty)
		}
		if err := (*c).Validate(); err != nil {
			return fmt.Errorf("%ss: %s: %w", kind, name, err)
		}
	}
	return nil
}

// Pick chooses the connection of a source from its app's named ones: the
// one named name; with name "", the source's own connection fields (inline)
// if it sets any (inlineSet); else the one named "default"; else the zero
// value, the source's built-in default. It returns the name of the one
// chosen, "" for inline or the built-in default. ok is false when name is
// not defined; the caller says so in its own words.
func Pick[T any](named map[string]*T, name string, inline T, inlineSet bool) (_ string, _ T, ok bool) {
	var zero T
	switch c := named[name]; {
	case name != "" && c == nil:
		return name, zero, false
	case name != "":
		return name, *c, true
	case inlineSet:
		return "", inline, true
	}
	if c := named[DefaultName]; c != nil {
		return DefaultName, *c, true
	}
	return "", zero, true
}

// Starts collects the start functions of what the sources of one config
// use (clients, watches, feeds, informers), so that the app's Start starts
// them once the whole config is provisioned. A function may come more than
// once (sources share clients) or belong to something already running for
// the previous config: it must start only once (sync.OnceFunc). The zero
// value is ready to use; it is safe for concurrent use.
type Starts struct {
	mu  sync.Mutex
	fns []func()
}

// Add adds start functions, to be called in this order.
func (s *Starts) Add(start ...func()) {
	s.mu.Lock()
	s.fns = append(s.fns, start...)
	s.mu.Unlock()
}

// Start calls the start functions added so far, in order.
func (s *Starts) Start() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, start := range s.fns {
		start()
	}
}

// Defined lists the names of an app's connections in order, for an error
// that says which ones there are.
func Defined[T any](named map[string]*T) []string {
	return slices.Sorted(maps.Keys(named))
}
