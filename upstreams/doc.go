// Package upstreams is the core that every registry-fed upstream source is
// built on: the kit that makes a source only its connection settings, its
// client and watch, and its translation of registry records into targets.
//
// The request path: a Publisher per source publishes immutable, sorted
// Snapshots through a Cell (an atomic pointer); GetUpstreams only loads the
// current snapshot and copies it into fresh reverseproxy.Upstream values, so
// a request never waits on, or talks to, the registry. Registered cells feed
// the admin dump (/discovery/upstreams), the metrics and the weights that
// lb_policy registry_weighted reads.
//
// The facts flow one way, from the registry into the core:
//
//   - a Condition is the state of a connection or of one query (a
//     long-poll, a subscription, an informer set): its problem, logged once
//     when it begins or changes and once when it ends;
//   - a Fanout hands one query's lists, and its trouble (the first problem
//     of the conditions it depends on, else the first list awaited), to
//     every source that asks the query, through each source's Receiver;
//   - a Publisher takes a source's list (targets, and why there are none)
//     and its trouble, and publishes the snapshot.
//
// The module side: an app embeds ServerApp (or Starts, with Connections of
// its own) for its named connections, their check and its Start and Stop; a
// source module embeds Source for GetUpstreams and Cleanup, opens its
// Provision with Open, resolves its connection with Connections.Resolve, and
// takes pooled clients and queries with Acquire, which keeps them across
// reloads until their last user is cleaned up, and ends it with Serve: one
// service, or, when the reference has request placeholders, services chosen
// per request (PerRequest: checked, allowed, bounded, each opened with the
// source's own open function into a Source of its own). A pooled value's
// background work runs on a Runner. Fingerprint, ClientTLS, TLSFailure,
// ExpandFields, Record, Skipped, Selecting and ParseAddr are the small steps
// every source takes alike.
package upstreams
