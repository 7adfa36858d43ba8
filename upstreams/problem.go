// Problem kinds: how a source's error is classified. A source marks its
// errors with Problem (a ProblemKind) or Pending (waiting for a first
// answer, no problem yet); kindsOf and ProblemKinds read the marks back.
// NewSnapshot keeps its error's kinds, which label
// caddy_discovery_problems_total (metrics.go), and Condition logs only
// errors that are not pending.

package upstreams

import "fmt"

// ProblemKind classifies a source's problem with a service, for the kind
// label of caddy_discovery_problems_total. The set is fixed, which keeps the
// metric's cardinality bounded.
type ProblemKind uint8

// The kinds of problems. A source marks its errors with Problem; an error
// that no source marked is KindOther.
const (
	// KindOther is a problem no source classified.
	KindOther ProblemKind = iota
	// KindUnreachable: the registry's server cannot be reached, or the
	// connection to it was lost.
	KindUnreachable
	// KindUnauthorized: the server rejected the credentials (401, a refused
	// Nacos login).
	KindUnauthorized
	// KindForbidden: the credentials may not read what the source needs (403).
	KindForbidden
	// KindRefused: the server refused without saying why (a Nacos
	// subscription that no instance list followed).
	KindRefused
	// KindNotFound: what the reference names does not exist (a Service, a
	// namespace, a Nacos service), or the server does not serve the API.
	KindNotFound
	// KindMisconfigured: the service exists, but not as the source's
	// settings need it (no such port, headless for cluster_ip, ExternalName).
	KindMisconfigured
	// KindNoBackends: the service exists and has no usable backend.
	KindNoBackends
	// KindNotSelected: the service has instances, but none bears the marks
	// the source selects by (Consul tags, metadata): to a source whose
	// marks are opt-in, like Traefik's exposedByDefault=false, a service it
	// does not see.
	KindNotSelected

	numKinds
)

var kindNames = [numKinds]string{"other", "unreachable", "unauthorized", "forbidden", "refused", "not_found", "misconfigured", "no_backends", "not_selected"}

// String is the kind's label value.
func (k ProblemKind) String() string {
	if k < numKinds {
		return kindNames[k]
	}
	return fmt.Sprintf("ProblemKind(%d)", uint8(k))
}

// kindError marks an error with a kind, or as pending. Its message is the
// wrapped error's.
type kindError struct {
	kind    ProblemKind
	pending bool
	err     error
}

func (e *kindError) Error() string { return e.err.Error() }
func (e *kindError) Unwrap() error { return e.err }

// Problem marks err as a problem of the given kind; the message stays err's,
// and errors.Is and errors.As see through the mark. Problem(k, nil) is nil.
func Problem(kind ProblemKind, err error) error {
	if err == nil {
		return nil
	}
	return &kindError{kind: kind, err: err}
}

// Pending marks err as the wait for a registry's first answer: shown like a
// problem (it is the reason there are no backends yet), but not counted as
// one. Pending(nil) is nil.
func Pending(err error) error {
	if err == nil {
		return nil
	}
	return &kindError{pending: true, err: err}
}

// kindSet is a set of ProblemKinds, one bit each.
type kindSet uint16

// kindsOf lists the kinds marked anywhere in err's tree. An error without
// marks is KindNoBackends if it wraps ErrNoTargets, else KindOther, unless
// it is pending.
func kindsOf(err error) kindSet {
	if err == nil {
		return 0
	}
	var set kindSet
	pending, noTargets := false, false
	var walk func(error)
	walk = func(e error) {
		if e == ErrNoTargets {
			noTargets = true
		}
		if k, ok := e.(*kindError); ok {
			if k.pending {
				pending = true
			} else {
				set |= 1 << k.kind
			}
		}
		switch u := e.(type) {
		case interface{ Unwrap() error }:
			if next := u.Unwrap(); next != nil {
				walk(next)
			}
		case interface{ Unwrap() []error }:
			for _, next := range u.Unwrap() {
				if next != nil {
					walk(next)
				}
			}
		}
	}
	walk(err)
	switch {
	case set != 0 || pending:
	case noTargets:
		set = 1 << KindNoBackends
	default:
		set = 1 << KindOther
	}
	return set
}

// ProblemKinds lists the kinds of problem that err reports, as
// caddy_discovery_problems_total counts them: none for nil or a pending
// error.
func ProblemKinds(err error) []ProblemKind {
	var kinds []ProblemKind
	set := kindsOf(err)
	for k := range numKinds {
		if set&(1<<k) != 0 {
			kinds = append(kinds, k)
		}
	}
	return kinds
}
