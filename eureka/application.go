package eureka

import (
	"fmt"
	"strings"

	"github.com/caddy-discovery/caddy-discovery/upstreams"
)

// application is one pooled subscription to one application's instances
// through one feed, shared by every source that reads the application,
// whatever its selection: a fanout hands each update to every source's
// view, and a source added later (a reload's) gets the last one at once,
// rather than after the poller's next turn.
type application struct {
	feed        *feed
	fan         *upstreams.Fanout[[]Instance]
	unsubscribe func()
}

func newApplication(f *feed, app string) *application {
	a := &application{feed: f}
	a.fan = upstreams.NewFanout[[]Instance](
		upstreams.Pending(fmt.Errorf("eureka %s: waiting for the first answer", f.where)), f.problem)
	a.unsubscribe = f.poller.Subscribe(app, func(up Update) {
		f.observe(up.Err) // the feed's condition: the fanout's trouble
		if up.Err == nil {
			a.fan.List(up.Instances)
		} else {
			a.fan.Troubled()
		}
	})
	return a
}

// Destruct ends the subscription once its last source is gone.
func (a *application) Destruct() error {
	a.unsubscribe()
	return nil
}

// acquireApplication returns the pooled subscription to app through f,
// creating it if needed, and holds it for src.
func acquireApplication(src *upstreams.Source, f *feed, feedKey, app string) (*application, error) {
	return upstreams.Acquire(src, feedKey+"/app/"+strings.ToUpper(app), func() (*application, error) { return newApplication(f, app), nil })
}

// view is one source's selection from an application's instances.
type view struct {
	sel   selection
	where string // the feed, for messages
	app   string // in upper case
	pub   *upstreams.Publisher
}

// Receive publishes what the view selects from the application's
// instances, or why there is nothing.
func (v *view) Receive(instances []Instance) {
	targets, skip := v.sel.targets(instances)
	var why error
	if len(targets) == 0 {
		why = noTargets(v.where, v.app, v.sel, skip)
	}
	v.pub.List(targets, why)
}

// Trouble publishes what keeps the instances from being current.
func (v *view) Trouble(err error) { v.pub.Trouble(err) }
