package upstreams

import (
	"fmt"
	"maps"
	"slices"
	"strings"
)

// HasMetadata reports whether an instance's metadata has every pair of
// want, the selection a source's `metadata` option makes.
func HasMetadata(metadata, want map[string]string) bool {
	for k, w := range want {
		if got, ok := metadata[k]; !ok || got != w {
			return false
		}
	}
	return true
}

// Selecting describes what a source selects from a service's records, for
// the admin dump and messages: parts that are not empty, then
// "metadata k=v,…" (sorted by key) when metadata is not, joined by ", ";
// "" when the source takes every record.
func Selecting(metadata map[string]string, parts ...string) string {
	parts = slices.DeleteFunc(slices.Clone(parts), func(p string) bool { return p == "" })
	if len(metadata) > 0 {
		var kv []string
		for _, k := range slices.Sorted(maps.Keys(metadata)) {
			kv = append(kv, k+"="+metadata[k])
		}
		parts = append(parts, "metadata "+strings.Join(kv, ","))
	}
	return strings.Join(parts, ", ")
}

// Named is a service as the admin dump, metrics and log lines name it: its
// reference, then what the source selects (see Selecting) in parentheses.
func Named(service, selecting string) string {
	if selecting == "" {
		return service
	}
	return service + " (" + selecting + ")"
}

// Skipped counts the records (keys, nodes, instances) that a source left
// out of a service's list, by reason, for the message that says why the
// list is empty: "2 not UP, 1 without an IP address Caddy can dial (such
// as key "a/1": …)". Its zero value is ready to use.
type Skipped struct {
	counts  map[string]int
	example string // the first record's detail given to AddExample
	// seen counts the records Take looked at, marked those among them
	// whose metadata has what the source selects, usable or not.
	seen, marked int
}

// Kind classifies a list without a usable record: KindNotSelected when
// Take saw records and none bore the metadata the source selects by (the
// service is not exposed to it), else KindNoBackends.
func (s Skipped) Kind() ProblemKind { return NotSelected(s.seen, s.marked) }

// NotSelected classifies a list without a usable instance, of total
// instances, marked of which bear the source's marks (tags, metadata)
// whatever their state: KindNotSelected when there are some and none is
// marked, else KindNoBackends.
func NotSelected(total, marked int) ProblemKind {
	if total > 0 && marked == 0 {
		return KindNotSelected
	}
	return KindNoBackends
}

// Add counts a record left out for reason, such as "not UP".
func (s *Skipped) Add(reason string) {
	if s.counts == nil {
		s.counts = make(map[string]int)
	}
	s.counts[reason]++
}

// AddExample counts like Add, and keeps the first record's detail, such as
// `key "a/1": not JSON`, as the message's example.
func (s *Skipped) AddExample(reason, detail string) {
	s.Add(reason)
	if s.example == "" {
		s.example = detail
	}
}

// String lists the counts, by reason in alphabetical order so that the
// message does not change with the order of the records, then the example.
func (s Skipped) String() string {
	var parts []string
	for _, reason := range slices.Sorted(maps.Keys(s.counts)) {
		parts = append(parts, fmt.Sprintf("%d %s", s.counts[reason], reason))
	}
	out := strings.Join(parts, ", ")
	if s.example != "" {
		out += " (such as " + s.example + ")"
	}
	return out
}
