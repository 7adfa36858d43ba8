package eureka

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// recorder collects a subscriber's updates.
type recorder struct {
	mu      sync.Mutex
	updates []Update
	ch      chan Update
}

func newRecorder() *recorder { return &recorder{ch: make(chan Update, 100)} }

func (r *recorder) fn(u Update) {
	r.mu.Lock()
	r.updates = append(r.updates, u)
	r.mu.Unlock()
	r.ch <- u
}

func (r *recorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.updates)
}

// next waits for the next update.
func (r *recorder) next(t *testing.T) Update {
	t.Helper()
	select {
	case u := <-r.ch:
		return u
	case <-time.After(5 * time.Second):
		t.Fatal("no update within 5s")
		return Update{}
	}
}

// until waits for an update that satisfies ok and returns it.
func (r *recorder) until(t *testing.T, what string, ok func(Update) bool) Update {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		select {
		case u := <-r.ch:
			if ok(u) {
				return u
			}
		case <-deadline:
			t.Fatalf("no update with %s within 5s", what)
			return Update{}
		}
	}
}

func (f *fakeEureka) with(fn func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn()
}

// verifyNoLeaks checks, after the test and its other cleanups (it must come
// first, as cleanups run last-in first-out), that no goroutine is left.
func verifyNoLeaks(t *testing.T) {
	t.Cleanup(func() { goleak.VerifyNone(t) })
}

// runPoller runs a poller until the test ends, and checks that it left no
// goroutine behind.
func runPoller(t *testing.T, c *Client, opts PollerOptions) *Poller {
	t.Helper()
	p := NewPoller(c, opts)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		p.Run(ctx)
		close(done)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Error("Run did not return within 5s of the cancellation")
		}
	})
	return p
}

func TestPollerFollowsChanges(t *testing.T) {
	verifyNoLeaks(t)
	f := newFakeEureka(t)
	f.set("WEB", fakeInstance{"a", "10.0.0.1", 8080, StatusUp})
	f.set("OTHER", fakeInstance{"o", "10.0.0.9", 9090, StatusUp})
	c := newTestClient(t, Config{Servers: []string{f.base()}})
	p := runPoller(t, c, PollerOptions{Interval: 20 * time.Millisecond})
	web := newRecorder()
	p.Subscribe("web", web.fn)

	u := web.next(t)
	if u.App != "WEB" || ids(u.Instances) != "a=UP" || u.Err != nil {
		t.Fatalf("first update: %+v", u)
	}
	if u.Instances[0].Port != (Port{8080, true}) || u.Instances[0].IPAddr != "10.0.0.1" {
		t.Errorf("instance: %+v", u.Instances[0])
	}

	f.set("WEB", fakeInstance{"b", "10.0.0.2", 8080, StatusUp})
	if u := web.next(t); ids(u.Instances) != "a=UP,b=UP" {
		t.Errorf("after adding b: %s", ids(u.Instances))
	}
	f.set("WEB", fakeInstance{"a", "10.0.0.1", 8080, StatusOutOfService})
	if u := web.next(t); ids(u.Instances) != "a=OUT_OF_SERVICE,b=UP" {
		t.Errorf("after a went out of service: %s", ids(u.Instances))
	}
	// Changes to other applications reach no WEB subscriber.
	n := web.count()
	f.set("OTHER", fakeInstance{"o", "10.0.0.9", 9090, StatusDown})
	f.set("OTHER", fakeInstance{"p", "10.0.0.8", 9090, StatusUp})
	time.Sleep(200 * time.Millisecond) // ten polls
	if web.count() != n {
		t.Errorf("WEB subscriber got %d updates for changes of OTHER", web.count()-n)
	}
	f.remove("WEB", "a")
	f.remove("WEB", "b")
	if u := web.next(t); len(u.Instances) != 0 || u.Err != nil {
		t.Errorf("after removing all: %+v", u)
	}
	if fulls, deltas := f.counts(); fulls != 1 || deltas < 5 {
		t.Errorf("%d full fetches and %d deltas; want 1 and many", fulls, deltas)
	}
}

func TestPollerReconcilesByHashCode(t *testing.T) {
	verifyNoLeaks(t)
	f := newFakeEureka(t)
	f.set("WEB", fakeInstance{"a", "10.0.0.1", 8080, StatusUp})
	c := newTestClient(t, Config{Servers: []string{f.base()}})
	p := runPoller(t, c, PollerOptions{Interval: 20 * time.Millisecond})
	web := newRecorder()
	p.Subscribe("WEB", web.fn)
	web.next(t)

	// A lost delta: the local copy misses b, its hash code differs from
	// the server's, and a full fetch brings b.
	f.with(func() { f.loseDelta = true })
	f.set("WEB", fakeInstance{"b", "10.0.0.2", 8080, StatusUp})
	if u := web.next(t); ids(u.Instances) != "a=UP,b=UP" {
		t.Errorf("after a lost delta: %s", ids(u.Instances))
	}
	if fulls, _ := f.counts(); fulls != 2 {
		t.Errorf("%d full fetches, want 2", fulls)
	}

	// A server whose hash code never matches: a full fetch after every
	// delta, as eureka-client does, and the same instances, so no update.
	f.with(func() { f.hashCode = "UP_99_" })
	fulls, _ := f.counts()
	n := web.count()
	time.Sleep(200 * time.Millisecond)
	if now, _ := f.counts(); now-fulls < 2 {
		t.Errorf("%d full fetches in 200ms of 20ms polls with mismatching hash codes", now-fulls)
	}
	if web.count() != n {
		t.Errorf("%d updates without a change", web.count()-n)
	}
}

func TestPollerFetchesAllWhenDeltaRefused(t *testing.T) {
	verifyNoLeaks(t)
	f := newFakeEureka(t)
	f.set("WEB", fakeInstance{"a", "10.0.0.1", 8080, StatusUp})
	f.with(func() { f.status["/eureka/apps/delta"] = http.StatusForbidden })
	c := newTestClient(t, Config{Servers: []string{f.base()}})
	p := runPoller(t, c, PollerOptions{Interval: 20 * time.Millisecond})
	web := newRecorder()
	p.Subscribe("WEB", web.fn)
	web.next(t)
	f.set("WEB", fakeInstance{"b", "10.0.0.2", 8080, StatusUp})
	if u := web.next(t); ids(u.Instances) != "a=UP,b=UP" || u.Err != nil {
		t.Errorf("with deltas refused: %+v", u)
	}
}

func TestPollerErrorsAndRecovery(t *testing.T) {
	verifyNoLeaks(t)
	f := newFakeEureka(t)
	f.set("WEB", fakeInstance{"a", "10.0.0.1", 8080, StatusUp})
	f.with(func() { f.status["/eureka/apps"] = http.StatusInternalServerError })
	c := newTestClient(t, Config{Servers: []string{f.base()}})
	p := runPoller(t, c, PollerOptions{Interval: 20 * time.Millisecond, MaxBackoff: 40 * time.Millisecond})
	web := newRecorder()
	p.Subscribe("WEB", web.fn)

	// Before the first successful poll: the failure, no instances.
	u := web.next(t)
	if u.Err == nil || u.Instances != nil || !strings.Contains(u.Err.Error(), "HTTP 500") {
		t.Fatalf("first update: %+v", u)
	}
	var status *StatusError
	if !errors.As(u.Err, &status) || status.Code != 500 {
		t.Errorf("the update's error does not wrap the status: %v", u.Err)
	}
	// The same failure again is no news.
	time.Sleep(200 * time.Millisecond)
	if n := web.count(); n != 1 {
		t.Errorf("%d updates for one unchanging failure", n)
	}

	f.with(func() { delete(f.status, "/eureka/apps") })
	if u := web.next(t); u.Err != nil || ids(u.Instances) != "a=UP" {
		t.Fatalf("after recovery: %+v", u)
	}

	// Failing deltas keep the instances and report the failure.
	f.with(func() {
		f.status["/eureka/apps/delta"] = http.StatusBadGateway
		f.status["/eureka/apps"] = http.StatusBadGateway
	})
	if u := web.next(t); u.Err == nil || ids(u.Instances) != "a=UP" {
		t.Errorf("while failing: %+v", u)
	}
	f.with(func() { f.status = map[string]int{} })
	if u := web.next(t); u.Err != nil || ids(u.Instances) != "a=UP" {
		t.Errorf("after recovery: %+v", u)
	}
}

func TestPollerBackoff(t *testing.T) {
	p := NewPoller(nil, PollerOptions{Interval: 5 * time.Second})
	for failures, want := range map[int]time.Duration{
		1: 5 * time.Second, 2: 10 * time.Second, 3: 20 * time.Second, 4: 40 * time.Second, 5: time.Minute, 50: time.Minute,
	} {
		for range 20 {
			if got := p.backoff(failures); got > want || got < want*4/5 {
				t.Errorf("backoff after %d failures: %v, want %v less up to a fifth", failures, got, want)
			}
		}
	}
	if got := NewPoller(nil, PollerOptions{Interval: 2 * time.Minute}).backoff(3); got > 2*time.Minute || got < 96*time.Second {
		t.Errorf("backoff with an interval above the default cap: %v", got)
	}
}

func TestPollerSubscriptions(t *testing.T) {
	verifyNoLeaks(t)
	f := newFakeEureka(t)
	f.set("WEB", fakeInstance{"a", "10.0.0.1", 8080, StatusUp})
	c := newTestClient(t, Config{Servers: []string{f.base()}})
	// An hour between polls: a late subscriber is served from the copy.
	p := runPoller(t, c, PollerOptions{Interval: time.Hour})
	first := newRecorder()
	p.Subscribe("WEB", first.fn)
	first.next(t)
	late := newRecorder()
	p.Subscribe("web", late.fn)
	if u := late.next(t); ids(u.Instances) != "a=UP" {
		t.Errorf("late subscriber: %+v", u)
	}
	missing := newRecorder()
	p.Subscribe("NONE", missing.fn)
	if u := missing.next(t); u.Instances != nil || u.Err != nil {
		t.Errorf("subscriber of an unknown application: %+v", u)
	}
	if n := first.count(); n != 1 {
		t.Errorf("the first subscriber got %d updates for others subscribing", n)
	}
}

func TestPollerCancelSubscription(t *testing.T) {
	verifyNoLeaks(t)
	f := newFakeEureka(t)
	f.set("WEB", fakeInstance{"a", "10.0.0.1", 8080, StatusUp})
	c := newTestClient(t, Config{Servers: []string{f.base()}})
	p := runPoller(t, c, PollerOptions{Interval: 5 * time.Millisecond})
	var mu sync.Mutex
	cancelled := false
	got := make(chan struct{}, 1000)
	cancel := p.Subscribe("WEB", func(Update) {
		mu.Lock()
		defer mu.Unlock()
		if cancelled {
			t.Error("update after cancel returned")
		}
		got <- struct{}{}
	})
	<-got
	// Updates keep coming while cancel runs.
	stop := make(chan struct{})
	go func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			f.set("WEB", fakeInstance{"a", "10.0.0.1", 8080 + i%2, StatusUp})
			time.Sleep(time.Millisecond)
		}
	}()
	time.Sleep(50 * time.Millisecond)
	cancel()
	mu.Lock()
	cancelled = true
	mu.Unlock()
	time.Sleep(50 * time.Millisecond)
	close(stop)
	cancel() // twice is fine
}
