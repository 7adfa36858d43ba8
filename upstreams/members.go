package upstreams

import "sync"

// Members is the set of watches that run through one client (or of the
// sources' views that one watch feeds), for telling each of them what
// concerns all: the connection's trouble, a reconnect, a new token. Its
// zero value is ready to use; it is safe for concurrent use.
type Members[T comparable] struct {
	mu sync.Mutex
	m  map[T]struct{}
}

// Add adds v.
func (s *Members[T]) Add(v T) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = make(map[T]struct{})
	}
	s.m[v] = struct{}{}
}

// Remove removes v.
func (s *Members[T]) Remove(v T) {
	s.mu.Lock()
	delete(s.m, v)
	s.mu.Unlock()
}

// Len is how many there are.
func (s *Members[T]) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.m)
}

// Each calls f on the members that match (all, for a nil match), outside
// the set's lock, so that f may take other locks or change the set, and
// returns how many there were.
func (s *Members[T]) Each(match func(T) bool, f func(T)) int {
	s.mu.Lock()
	todo := make([]T, 0, len(s.m))
	for v := range s.m {
		if match == nil || match(v) {
			todo = append(todo, v)
		}
	}
	s.mu.Unlock()
	for _, v := range todo {
		f(v)
	}
	return len(todo)
}
