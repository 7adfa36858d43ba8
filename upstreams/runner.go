package upstreams

import (
	"context"
	"sync"
	"time"
)

// Runner is the background work of a pooled client or watch: it starts
// when the app starts, never at Provision (which `caddy validate` runs
// too), once however many sources and configs share it, and stops when the
// last source using it is cleaned up (its Destruct), never to start again.
// Embed it and call Init in the constructor.
type Runner struct {
	// Ctx ends when the runner stops: the background work returns, and
	// its requests are cancelled.
	Ctx    context.Context
	cancel context.CancelFunc
	once   sync.Once
	done   sync.WaitGroup
}

// Init readies the runner; nothing runs yet.
func (r *Runner) Init() { r.Ctx, r.cancel = context.WithCancel(context.Background()) }

// Start runs each of fns on a goroutine of its own, the first time it is
// called and unless the runner stopped before: an app's Start calls it for
// every source, and after a reload for what the previous config started.
func (r *Runner) Start(fns ...func()) {
	r.once.Do(func() {
		if r.Ctx.Err() != nil {
			return
		}
		for _, f := range fns {
			r.done.Go(f)
		}
	})
}

// Until waits for ch (a timer's or ticker's channel) and reports true, or
// false once the runner stops: the loop of a background check is
// `for r.Until(ticker.C) { … }`.
func (r *Runner) Until(ch <-chan time.Time) bool {
	select {
	case <-r.Ctx.Done():
		return false
	case <-ch:
		return true
	}
}

// Settle waits a moment (100 ms) after a service's first answer, before
// the source holds anything on the server for it (a watch, a blocking
// query), and reports false once the runner stops: a service chosen per
// request that the answer found unknown is dropped meanwhile, so the
// server never holds a watch for it. What follows must miss nothing: it
// starts from the answer's revision or index, or reads everything again.
func (r *Runner) Settle() bool { return r.Until(time.After(settleTime)) }

const settleTime = 100 * time.Millisecond

// Cancel ends Ctx without waiting for the goroutines to return.
func (r *Runner) Cancel() { r.cancel() }

// Wait waits for the goroutines that Start ran to return.
func (r *Runner) Wait() { r.done.Wait() }

// Stop ends Ctx and waits for the goroutines to return: what Start runs
// must return promptly once Ctx ends, so that a reload never waits on a
// registry.
func (r *Runner) Stop() {
	r.cancel()
	r.done.Wait()
}
