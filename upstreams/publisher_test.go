package upstreams

import (
	"errors"
	"strings"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// TestPublisherFacts follows a service through the facts a registry pushes
// and checks, after each, the snapshot the request path reads and the lines
// logged.
func TestPublisherFacts(t *testing.T) {
	core, logs := observer.New(zapcore.InfoLevel)
	p := NewPublisher(zap.New(core), "shop/web")
	lost := Problem(KindUnreachable, errors.New("cannot reach the server"))
	gone := Problem(KindNotFound, errors.New("service shop/web not found"))
	a := target("10.0.0.1", 80, 1)

	for _, step := range []struct {
		name    string
		push    func()
		dials   []string
		err     string // the snapshot's error; "" for none
		logged  []string
		pending bool
	}{
		{name: "before the first list", push: func() {}, err: "shop/web: waiting for the first list", pending: true},
		{name: "trouble before the first list", push: func() { p.Trouble(lost) }, err: "cannot reach the server"},
		{name: "first list", push: func() { p.Trouble(nil); p.List([]Target{a}, nil) }, dials: []string{"10.0.0.1:80"}},
		{name: "trouble keeps the list", push: func() { p.Trouble(lost) }, dials: []string{"10.0.0.1:80"}, err: "cannot reach the server"},
		{name: "empty list during trouble: not logged", push: func() { p.List(nil, gone) }, err: "service shop/web not found; cannot reach the server"},
		{name: "trouble over: the own problem is logged", push: func() { p.Trouble(nil) }, err: "service shop/web not found",
			logged: []string{"service has no usable backends"}},
		{name: "same problem again: not logged", push: func() { p.List(nil, gone) }, err: "service shop/web not found"},
		{name: "empty without a reason", push: func() { p.List(nil, nil) }, err: ErrNoTargets.Error(),
			logged: []string{"service has no usable backends"}},
		{name: "backends again", push: func() { p.List([]Target{a}, nil) }, dials: []string{"10.0.0.1:80"},
			logged: []string{"service has backends again"}},
	} {
		logs.TakeAll()
		step.push()
		s := p.Load()
		if got := s.Dials(); strings.Join(got, ",") != strings.Join(step.dials, ",") {
			t.Errorf("%s: dials = %v, want %v", step.name, got, step.dials)
		}
		switch err := s.Err(); {
		case step.err == "" && err != nil, step.err != "" && (err == nil || err.Error() != step.err):
			t.Errorf("%s: err = %v, want %q", step.name, err, step.err)
		}
		if got := len(ProblemKinds(s.Err())) == 0 && s.Err() != nil; got != step.pending {
			t.Errorf("%s: pending = %v, want %v", step.name, got, step.pending)
		}
		var msgs []string
		for _, e := range logs.All() {
			msgs = append(msgs, e.Message)
		}
		if strings.Join(msgs, "|") != strings.Join(step.logged, "|") {
			t.Errorf("%s: logged %q, want %q", step.name, msgs, step.logged)
		}
	}
}

func TestConditionLogsChangesOnly(t *testing.T) {
	core, logs := observer.New(zapcore.InfoLevel)
	c := NewCondition(zap.New(core), "failed", "works again", zap.String("server", "a"))
	refused := errors.New("connection refused")
	for i, step := range []struct {
		err     error
		changed bool
		logged  string
	}{
		{nil, false, ""},
		{refused, true, "failed"},
		{errors.New("connection refused"), false, ""}, // the same message on a retry
		{errors.New("timeout"), true, "failed"},
		{nil, true, "works again"},
		{nil, false, ""},
		{Pending(errors.New("connecting")), true, ""}, // a wait, not a problem
		{nil, true, "works again"},
	} {
		logs.TakeAll()
		if got := c.Set(step.err); got != step.changed {
			t.Errorf("step %d: Set(%v) = %v, want %v", i, step.err, got, step.changed)
		}
		var msgs []string
		for _, e := range logs.All() {
			msgs = append(msgs, e.Message)
			if e.ContextMap()["server"] != "a" {
				t.Errorf("step %d: line %q lacks the condition's fields: %v", i, e.Message, e.ContextMap())
			}
		}
		if strings.Join(msgs, "|") != step.logged {
			t.Errorf("step %d: logged %q, want %q", i, msgs, step.logged)
		}
		if c.Err() != step.err && step.changed {
			t.Errorf("step %d: Err() = %v, want %v", i, c.Err(), step.err)
		}
	}
}
