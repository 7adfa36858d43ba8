package consul

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/caddy-discovery/caddy-discovery/upstreams"
)

// The diagnosis of a long-poll that fails, is refused or finds no passing
// instance: each says what to fix, and carries its kind for the metrics.
// Messages never hold the token, and hold nothing that changes from one
// retry to the next (the query's index, a local port), so that a problem
// that persists is logged once.

// connectionError explains a request that did not reach Consul, or returns
// nil if it did (Consul answered, whatever it said); timeout is the
// request's.
func (c *client) connectionError(err error, timeout time.Duration) error {
	var tf *tokenFileError
	if errors.As(err, &tf) {
		return upstreams.Problem(upstreams.KindUnauthorized, fmt.Errorf("%s: %w (serving the last known instances meanwhile)", c.where, tf.err))
	}
	var ue *url.Error
	if !errors.As(err, &ue) {
		return nil
	}
	cause := ue.Err
	var op *net.OpError
	if errors.As(cause, &op) && op.Err != nil {
		cause = op.Err // without the local address, which changes
	}
	var record tls.RecordHeaderError
	msg := ue.Err.Error()
	fix := "check addresses, and that the Consul agent runs and its HTTP API listens there"
	tlsFix, tlsFailed := upstreams.TLSFailure(err, "Consul", "verify_incoming")
	switch {
	case tlsFailed:
		fix = tlsFix
	case strings.Contains(msg, "server gave HTTP response to HTTPS client"), errors.As(err, &record):
		fix = "it speaks plain HTTP: write http:// addresses (or host:port) and remove tls, ca_file, cert_file, key_file and tls_server_name, or enable its HTTPS port"
	case strings.Contains(msg, "malformed HTTP response") || strings.Contains(msg, "\x15\x03"):
		fix = "it speaks HTTPS: write https:// addresses, or set tls"
	case ue.Timeout():
		cause = fmt.Errorf("no answer within %s", timeout)
		fix = "check that the Consul agent is not hung and that nothing on the way drops long-lived requests"
	}
	return upstreams.Problem(upstreams.KindUnreachable, fmt.Errorf("cannot reach %s: %v: %s (serving the last known instances meanwhile)", c.where, cause, fix))
}

// explain turns a query that Consul refused or failed into an error that
// says what to fix.
func (w *longPoll) explain(err error) error {
	var se api.StatusError
	if !errors.As(err, &se) {
		// Not an answer Consul gives: a decoding error, or other JSON.
		return fmt.Errorf("%s: querying %s: %w: is this Consul's HTTP API? check addresses", w.c.where, w.q.subject(), err)
	}
	body := se.Body
	if len(body) > 300 {
		body = body[:300] + "..."
	}
	has := func(s string) bool { return strings.Contains(strings.ToLower(body), strings.ToLower(s)) }
	switch {
	case has("HTTP request to an HTTPS server"):
		return upstreams.Problem(upstreams.KindUnreachable, fmt.Errorf("cannot reach %s: it speaks HTTPS: write https:// addresses, or set tls (serving the last known instances meanwhile)", w.c.where))
	case se.Code == 403 && has("ACL not found"):
		return upstreams.Problem(upstreams.KindUnauthorized, fmt.Errorf("%s rejected the ACL token querying %s: %s: the token does not exist; check token or token_file (the secret ID of a token of this cluster, not its accessor ID)",
			w.c.where, w.q.subject(), body))
	case se.Code == 401 || se.Code == 403:
		return upstreams.Problem(upstreams.KindForbidden, fmt.Errorf("%s refused the ACL token querying %s: %s: %s", w.c.where, w.q.subject(), body, w.policyHint()))
	case has("Namespaces are a Consul Enterprise feature"):
		return upstreams.Problem(upstreams.KindMisconfigured, fmt.Errorf("namespace: %s is Consul Community Edition, which has no namespaces (%s); remove namespace", w.c.where, body))
	case has("Partitions are a Consul Enterprise feature"):
		return upstreams.Problem(upstreams.KindMisconfigured, fmt.Errorf("partition: %s is Consul Community Edition, which has no admin partitions (%s); remove partition", w.c.where, body))
	case w.q.filter != "" && (has("filter") || has("expression") || has("selector")):
		return upstreams.Problem(upstreams.KindMisconfigured, fmt.Errorf("filter: %s rejected the filter %q: %s; see https://developer.hashicorp.com/consul/api-docs/features/filtering for the syntax and the fields of /v1/health/service",
			w.c.where, w.q.filter, body))
	case has("No path to datacenter"):
		return upstreams.Problem(upstreams.KindNotFound, fmt.Errorf("datacenter: %s knows no datacenter %q (%s); check datacenter (`consul catalog datacenters` lists them)", w.c.where, w.q.datacenter, body))
	case has("No cluster leader"):
		return upstreams.Problem(upstreams.KindUnreachable, fmt.Errorf("%s: the Consul servers have no leader (%s); serving the last known instances meanwhile", w.c.where, body))
	case se.Code == 404:
		return upstreams.Problem(upstreams.KindNotFound, fmt.Errorf("%s answered 404 Not Found to /v1/health/service/%s: is this Consul's HTTP API? check addresses (and their path prefix)", w.c.where, w.q.service))
	case se.Code == 429 && has("too many concurrent connections"):
		// Each blocking query holds an HTTP connection for its whole wait,
		// and the agent counts them per client IP.
		return upstreams.Problem(upstreams.KindRefused, fmt.Errorf("%s: querying %s: the agent refused another connection from Caddy's address (429 %s): Caddy holds one connection per blocking query, %d through this connection now, "+
			"and the agent allows http_max_conns_per_client (default 200) per client address; raise it in the agent's config, e.g. limits { http_max_conns_per_client = %d }; retrying with backoff",
			w.c.where, w.q.subject(), body, w.c.polls.Len(), max(1000, 2*w.c.polls.Len())))
	case se.Code == 429:
		return fmt.Errorf("%s: querying %s: Consul's rate limit refused the query (429 %s); retrying with backoff", w.c.where, w.q.subject(), body)
	}
	return fmt.Errorf("%s: querying %s: Consul answered %d: %s", w.c.where, w.q.subject(), se.Code, body)
}

// policyHint says what the token's policy needs to read the service.
func (w *longPoll) policyHint() string {
	hint := fmt.Sprintf(`give the token a policy with service %q { policy = "read" } and node_prefix "" { policy = "read" }`, w.q.service)
	if w.q.namespace != "" || w.q.partition != "" {
		hint += " in the service's namespace and partition"
	}
	if !w.c.token {
		hint += "; no token is set, so the agent's default token (or the anonymous token) is used: set token or token_file"
	}
	return hint
}

// aclHides is the problem of an answer that ACLs filtered: the token may
// not read the service, or some of its nodes (Consul lists an instance
// only to a token that may read both).
func (w *longPoll) aclHides(some bool) error {
	what := "the instances"
	if some {
		what = "some instances"
	}
	return upstreams.Problem(upstreams.KindForbidden, fmt.Errorf("%s hides %s of %s from the ACL token (the answer was filtered by ACLs): %s",
		w.c.where, what, w.q.subject(), w.policyHint()))
}

// diagnose says why the query found no passing instance. Unless ACLs
// filtered the answer, it asks Consul once for all the service's instances,
// whatever their health, tags and the filter, and tells them apart.
func (w *longPoll) diagnose(ac *api.Client, filtered bool) error {
	if filtered {
		return w.aclHides(false)
	}
	plain := upstreams.Problem(upstreams.KindNoBackends, fmt.Errorf("%s: %s has no passing instance%s", w.c.where, w.q.subject(), w.selecting()))
	ctx, cancel := context.WithTimeout(w.Ctx, diagnoseTimeout)
	defer cancel()
	opts := (&api.QueryOptions{Datacenter: w.q.datacenter}).WithContext(withScope(ctx, scope{namespace: w.q.namespace, partition: w.q.partition}))
	all, meta, err := ac.Health().Service(w.q.service, "", false, opts)
	switch {
	case err != nil:
		return plain
	case len(all) == 0 && meta.ResultsFilteredByACLs:
		return w.aclHides(false)
	case len(all) == 0 && meta.DefaultACLPolicy == "deny" && !w.c.token:
		// Consul does not always flag what it hides from the anonymous
		// token (v1.14: an empty answer, no X-Consul-Results-Filtered-By-ACLs)
		return upstreams.Problem(upstreams.KindForbidden, fmt.Errorf("%s shows no instance of %s: its ACLs deny by default and no token is set, so Consul shows the anonymous token nothing (or the service is not registered): set token or token_file to a token whose policy has service %q { policy = \"read\" } and node_prefix \"\" { policy = \"read\" }",
			w.c.where, w.q.subject(), w.q.service))
	case len(all) == 0:
		dc := "the agent's datacenter"
		if w.q.datacenter != "" {
			dc = fmt.Sprintf("datacenter %q", w.q.datacenter)
		}
		acl := ""
		if meta.DefaultACLPolicy == "deny" {
			acl = fmt.Sprintf(", and that the token's policy has service %q { policy = \"read\" } and node_prefix \"\" { policy = \"read\" } (ACLs deny by default here)", w.q.service)
		}
		return upstreams.Problem(upstreams.KindNotFound, fmt.Errorf("%s: %s is not registered: %s has no instance of it; check the service name (`consul catalog services` lists them) and datacenter%s",
			w.c.where, w.q.subject(), dc, acl))
	}
	var passing, tagged, warning, critical, maint, marked int
	for _, e := range all {
		if e == nil || e.Service == nil {
			continue
		}
		if hasTags(e.Service.Tags, w.q.tags) {
			marked++ // whatever its health
		}
		switch e.Checks.AggregatedStatus() {
		case api.HealthMaint:
			maint++
		case api.HealthCritical:
			critical++
		case api.HealthWarning:
			warning++
		default:
			passing++
			if hasTags(e.Service.Tags, w.q.tags) {
				tagged++
			}
		}
	}
	var counts []string
	for _, c := range []struct {
		n    int
		what string
	}{{passing, "passing"}, {maint, "in maintenance"}, {critical, "critical"}, {warning, "warning"}} {
		if c.n > 0 {
			counts = append(counts, fmt.Sprintf("%d %s", c.n, c.what))
		}
	}
	var reason string
	kind := upstreams.KindNoBackends
	if len(w.q.tags) > 0 && marked == 0 {
		kind = upstreams.KindNotSelected // no instance, passing or not, has the tags
	}
	switch {
	case passing == 0 && kind == upstreams.KindNoBackends:
		reason = "none passes all its health checks (node checks included); a check in warning counts as not passing"
	case len(w.q.tags) > 0 && tagged == 0:
		reason = fmt.Sprintf("no passing one has all the tags %s", strings.Join(w.q.tags, ","))
	case w.q.filter != "":
		reason = fmt.Sprintf("the filter %q excludes the %d passing ones with the tags", w.q.filter, tagged)
	default:
		return plain // it changed meanwhile
	}
	return upstreams.Problem(kind, fmt.Errorf("%s: %s has no passing instance%s: of %d instances, %s: %s",
		w.c.where, w.q.subject(), w.selecting(), len(all), strings.Join(counts, ", "), reason))
}

// selecting is " (selecting tags ..., filter ...)", or "".
func (w *longPoll) selecting() string {
	if sel := w.q.selection(); sel != "" {
		return " (selecting " + sel + ")"
	}
	return ""
}

// hasTags reports whether have holds every tag of want.
func hasTags(have, want []string) bool {
	for _, t := range want {
		if !slices.Contains(have, t) {
			return false
		}
	}
	return true
}
