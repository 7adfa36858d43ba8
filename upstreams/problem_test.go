// Tests of the problem kinds: marking errors and reading the marks back.

package upstreams

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
)

func TestProblemKinds(t *testing.T) {
	plain := errors.New("something")
	forbidden := Problem(KindForbidden, errors.New("403"))
	for _, tc := range []struct {
		err  error
		want []ProblemKind
	}{
		{nil, nil},
		{plain, []ProblemKind{KindOther}},
		{Pending(plain), nil},
		{forbidden, []ProblemKind{KindForbidden}},
		{fmt.Errorf("listing: %w", forbidden), []ProblemKind{KindForbidden}},
		{fmt.Errorf("service not found (%w)", forbidden), []ProblemKind{KindForbidden}},
		{fmt.Errorf("%w (%w)", Problem(KindNotFound, plain), forbidden), []ProblemKind{KindForbidden, KindNotFound}},
		{fmt.Errorf("no instances: %w", ErrNoTargets), []ProblemKind{KindNoBackends}},
		{fmt.Errorf("%w: %w", Problem(KindNotFound, plain), ErrNoTargets), []ProblemKind{KindNotFound}},
		{fmt.Errorf("%w; %w", Problem(KindNoBackends, plain), Problem(KindUnreachable, plain)), []ProblemKind{KindUnreachable, KindNoBackends}},
		{fmt.Errorf("%w; %w", plain, Pending(plain)), nil},
		{Problem(KindOther, plain), []ProblemKind{KindOther}},
	} {
		if got := ProblemKinds(tc.err); !slices.Equal(got, tc.want) {
			t.Errorf("ProblemKinds(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
	if err := Problem(KindForbidden, plain); err.Error() != plain.Error() || !errors.Is(err, plain) {
		t.Error("a marked error must keep its message and unwrap to the original")
	}
	if Problem(KindForbidden, nil) != nil || Pending(nil) != nil {
		t.Error("marking nil must give nil")
	}
	seen := map[string]bool{}
	for k := range numKinds {
		name := k.String()
		if seen[name] || name == "" || strings.ContainsAny(name, " -") {
			t.Errorf("kind %d has a bad or repeated label value %q", k, name)
		}
		seen[name] = true
	}
}
