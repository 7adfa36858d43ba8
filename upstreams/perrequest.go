package upstreams

import (
	"cmp"
	"errors"
	"fmt"
	"net/http"
	"path"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"
	"github.com/prometheus/client_golang/prometheus"
)

// PerRequest bounds a source whose service is chosen per request: its
// service reference holds request placeholders, such as
// {http.request.host.labels.2} or a path regexp's {re.svc.1}, replaced on
// every request. Each name a request brings is checked (the registry's
// name rules, then `allow` and `deny`) before anything else; an allowed
// one is looked up in the registry once and then followed like a fixed
// service, until it has been idle for `idle_timeout`.
//
// A request whose name is malformed, not allowed or unknown to the
// registry gets no upstream; so does one over the bounds. reverse_proxy
// answers such a request with 503: put `discovery_error` in the site's
// `handle_errors` to answer it as the lookup decided (404 by default,
// 503 with Retry-After over capacity, 504 when the registry did not answer
// in time).
type PerRequest struct {
	// The names a request may choose, as patterns: by default globs matched
	// as path.Match does (`*` within one '/'-separated segment, `?`, and
	// classes such as `[a-z]`), e.g. `shop-*` or `shop/*`; with `regex`,
	// RE2 regular expressions that must match the whole name. Required when
	// the service has request placeholders: without it, every name a
	// client sends would reach the registry.
	Allow []string `json:"allow,omitempty"`

	// Names refused even when `allow` matches them, in the same syntax,
	// e.g. the gateway's own services.
	Deny []string `json:"deny,omitempty"`

	// `allow` and `deny` are RE2 regular expressions (anchored at both
	// ends) instead of globs. Default: false
	Regex bool `json:"regex,omitempty"`

	// At most this many services chosen per request are followed at once;
	// a new one beyond it is refused (503 with Retry-After) until one has
	// been idle for `idle_timeout`. A service in use is never dropped.
	// Default: 100
	MaxServices int `json:"max_services,omitempty"`

	// A service no request has chosen for this long stops being followed.
	// Default: 10m
	IdleTimeout caddy.Duration `json:"idle_timeout,omitempty"`

	// How long the first request for a new service waits for the
	// registry's first answer before it gets 504. Requests for it that
	// arrive meanwhile wait for the same answer. Default: 3s
	FirstAnswerTimeout caddy.Duration `json:"first_answer_timeout,omitempty"`

	// At most this many new services are looked up at once; a request for
	// yet another new one gets 503 with Retry-After. Default: 8
	MaxLookups int `json:"max_lookups,omitempty"`

	// How long a name the registry does not know is answered as unknown
	// without asking the registry again. Default: 30s
	UnknownTTL caddy.Duration `json:"unknown_ttl,omitempty"`

	// The status for a name that is malformed, not allowed or unknown:
	// the same for all three, so that it does not tell a client which names
	// exist. Default: 404
	DeniedStatus int `json:"denied_status,omitempty"`
}

// Services is the most services followed at once: MaxServices, or its
// default.
func (c PerRequest) Services() int { return cmp.Or(c.MaxServices, defaultMaxServices) }

// Defaults of PerRequest.
const (
	defaultMaxServices        = 100
	defaultIdleTimeout        = 10 * time.Minute
	defaultFirstAnswerTimeout = 3 * time.Second
	defaultMaxLookups         = 8
	defaultUnknownTTL         = 30 * time.Second
	maxNameLen                = 253
)

// IsSet reports whether a field is set.
func (p PerRequest) IsSet() bool { return p.firstSet() != "" }

// fields are the fields by name, each with whether it is set.
func (p PerRequest) fields() []struct {
	name string
	set  bool
} {
	return []struct {
		name string
		set  bool
	}{
		{"allow", len(p.Allow) > 0}, {"deny", len(p.Deny) > 0}, {"regex", p.Regex}, {"max_services", p.MaxServices != 0},
		{"idle_timeout", p.IdleTimeout != 0}, {"first_answer_timeout", p.FirstAnswerTimeout != 0}, {"max_lookups", p.MaxLookups != 0},
		{"unknown_ttl", p.UnknownTTL != 0}, {"denied_status", p.DeniedStatus != 0},
	}
}

// firstSet is the name of the first field that is set, or "".
func (p PerRequest) firstSet() string {
	for _, f := range p.fields() {
		if f.set {
			return f.name
		}
	}
	return ""
}

// fieldNames lists the fields' names, as "a, b and c".
func (p PerRequest) fieldNames() string {
	fs := p.fields()
	names := make([]string, len(fs))
	for i, f := range fs {
		names[i] = f.name
	}
	return strings.Join(names[:len(names)-1], ", ") + " and " + names[len(names)-1]
}

// Validate checks the fields. perRequest says whether the service has
// request placeholders: without them, the fields do not apply; with them,
// allow is required.
func (p PerRequest) Validate(perRequest bool) error {
	switch {
	case !perRequest && p.IsSet():
		return fmt.Errorf("%s: set, but %s only apply to a service chosen per request (one with request placeholders such as {http.request.host.labels.2}); remove it, or choose the service per request", p.firstSet(), p.fieldNames())
	case !perRequest:
		return nil
	case len(p.Allow) == 0:
		return errors.New("allow: required with a service chosen per request; list the names requests may choose, e.g. allow shop-*, so that a client cannot make Caddy look up any name")
	case p.MaxServices < 0, p.MaxLookups < 0, p.IdleTimeout < 0, p.FirstAnswerTimeout < 0, p.UnknownTTL < 0:
		return errors.New("max_services, max_lookups, idle_timeout, first_answer_timeout and unknown_ttl must not be negative")
	case p.DeniedStatus != 0 && (p.DeniedStatus < 400 || p.DeniedStatus > 599):
		return fmt.Errorf("denied_status: %d is not an HTTP error status (400-599)", p.DeniedStatus)
	}
	_, err := p.patterns()
	return err
}

// matcher decides which names a request may choose.
type matcher struct {
	allow, deny []func(string) bool
}

func (m matcher) allows(name string) bool {
	for _, d := range m.deny {
		if d(name) {
			return false
		}
	}
	for _, a := range m.allow {
		if a(name) {
			return true
		}
	}
	return false
}

// patterns compiles allow and deny.
func (p PerRequest) patterns() (matcher, error) {
	var m matcher
	for _, list := range []struct {
		field    string
		patterns []string
		dst      *[]func(string) bool
	}{{"allow", p.Allow, &m.allow}, {"deny", p.Deny, &m.deny}} {
		for _, pat := range list.patterns {
			f, err := compilePattern(pat, p.Regex)
			if err != nil {
				return m, fmt.Errorf("%s: %w", list.field, err)
			}
			*list.dst = append(*list.dst, f)
		}
	}
	return m, nil
}

func compilePattern(pat string, regex bool) (func(string) bool, error) {
	if pat == "" {
		return nil, errors.New("empty pattern")
	}
	if regex {
		re, err := regexp.Compile(`^(?:` + pat + `)$`)
		if err != nil {
			return nil, fmt.Errorf("%q is not an RE2 regular expression: %v", pat, err)
		}
		return re.MatchString, nil
	}
	if _, err := path.Match(pat, ""); err != nil {
		return nil, fmt.Errorf("%q is not a glob such as shop-* (path.Match syntax): %v", pat, err)
	}
	return func(name string) bool {
		ok, _ := path.Match(pat, name)
		return ok
	}, nil
}

// CheckRequestName applies the rules every name chosen per request must
// pass, whatever the registry, before the registry's own: 1 to 253
// printable ASCII characters, without spaces, '%', '\', '..' or an empty
// '/'-separated segment. A request's name is the client's: these rules keep
// encodings, path tricks and odd characters away from the registry.
func CheckRequestName(name string) error {
	switch {
	case name == "":
		return errors.New("empty name")
	case len(name) > maxNameLen:
		return fmt.Errorf("name of %d bytes; at most %d", len(name), maxNameLen)
	case !utf8.ValidString(name):
		return errors.New("name is not UTF-8")
	case strings.Contains(name, ".."), strings.Contains(name, "//"), strings.HasPrefix(name, "/"), strings.HasSuffix(name, "/"):
		return fmt.Errorf("name %q has an empty or .. segment", Clip(name))
	}
	for _, r := range name {
		if r <= ' ' || r > '~' || r == '%' || r == '\\' {
			return fmt.Errorf("name %q has a character other than printable ASCII, or a space, %% or \\", Clip(name))
		}
	}
	return nil
}

// HasRequestPlaceholders reports whether ref, its config-time placeholders
// ({env.X} and the like) replaced, still holds placeholders: ones replaced
// per request.
func HasRequestPlaceholders(ref string) bool { return strings.Contains(ref, "{") }

// Lookup outcomes, for the metrics.
const (
	lookupHit         = "hit"
	lookupNew         = "new"
	lookupDenied      = "denied"
	lookupInvalid     = "invalid"
	lookupUnknown     = "unknown"
	lookupOverLimit   = "over_capacity"
	lookupTimeout     = "timeout"
	lookupUnavailable = "unavailable"
)

// OpenFunc opens the view of one service, name, into src: it acquires the
// pooled watch (through src), publishes with src.Publish and joins the
// watch's fanout. It makes no request: it returns the watch's start, which
// the app calls for a service of the config, and the first lookup at once
// for a service chosen per request.
type OpenFunc func(src *Source, name string) (start func(), err error)

// Serve ends a source's Provision once its connection is resolved: a
// service reference with request placeholders (see PerRequest.Reference) makes
// the source serve services chosen per request, within cfg's bounds, each
// opened with open after check (the registry's name rules) accepts its
// name; any other opens the one service into s, its start added to app.
// kind is the source's name ("etcd").
func (s *Source) Serve(app *Starts, kind, service string, cfg PerRequest, check func(string) error, open OpenFunc) error {
	if HasRequestPlaceholders(service) {
		return s.ServePerRequest(kind, service, cfg, check, open)
	}
	start, err := open(s, service)
	if err != nil {
		return err
	}
	app.Add(start)
	return nil
}

// perRequest serves a source's services chosen per request.
type perRequest struct {
	kind     string // the source's name ("etcd"), for the metrics
	template string // the service reference with request placeholders
	// With one placeholder, the template is prefix{key}suffix, and the
	// entries are keyed by the placeholder's value alone: a hit costs one
	// lookup of the replacer and no allocation. key is "" with several.
	prefix, key, suffix string
	check               func(name string) error
	open                OpenFunc
	match               matcher
	cfg                 PerRequest // with defaults filled in

	entries atomic.Pointer[map[string]*entry] // copy-on-write: hits read it without a lock
	hits    prometheus.Counter                // lookups{result="hit"}, resolved once
	// clock is the time (unix nanoseconds) that a hit stamps its entry's
	// last use with, which the janitor advances every second: cheaper than
	// reading the time on every request, and precise enough for idle_timeout.
	clock atomic.Int64

	mu       sync.Mutex // for misses: the entries' changes, unknown, inFlight
	unknown  map[string]time.Time
	inFlight int
	janitor  *time.Ticker
	stop     chan struct{}
	stopped  bool
	running  sync.WaitGroup // the janitor and the first lookups
}

// entry is one service chosen per request.
type entry struct {
	src     Source
	lastUse atomic.Int64  // unix nanoseconds
	ready   chan struct{} // closed at the first answer, or when opening failed
	done    atomic.Bool   // set before ready closes, for the request path: no channel lock
	err     error         // set before ready closes: opening failed
}

// ServePerRequest makes s serve the services that template (the service
// reference, with request placeholders) names per request: check is the
// registry's name rules, open opens one service. kind is the source's name
// ("etcd"). Call it in Provision, instead of opening one service; cfg must
// be valid (see PerRequest.Validate).
func (s *Source) ServePerRequest(kind, template string, cfg PerRequest, check func(string) error, open OpenFunc) error {
	m, err := cfg.patterns()
	if err != nil {
		return err
	}
	fill := func(d *caddy.Duration, def time.Duration) {
		if *d == 0 {
			*d = caddy.Duration(def)
		}
	}
	if cfg.MaxServices == 0 {
		cfg.MaxServices = defaultMaxServices
	}
	if cfg.MaxLookups == 0 {
		cfg.MaxLookups = defaultMaxLookups
	}
	if cfg.DeniedStatus == 0 {
		cfg.DeniedStatus = http.StatusNotFound
	}
	fill(&cfg.IdleTimeout, defaultIdleTimeout)
	fill(&cfg.FirstAnswerTimeout, defaultFirstAnswerTimeout)
	fill(&cfg.UnknownTTL, defaultUnknownTTL)
	pr := &perRequest{kind: kind, template: template, check: check, open: open, match: m, cfg: cfg,
		hits: lookups.WithLabelValues(kind, lookupHit), unknown: map[string]time.Time{}, stop: make(chan struct{})}
	if strings.Count(template, "{") == 1 && strings.Count(template, "}") == 1 {
		if start, end := strings.IndexByte(template, '{'), strings.IndexByte(template, '}'); start < end {
			pr.prefix, pr.key, pr.suffix = template[:start], template[start+1:end], template[end+1:]
		}
	}
	pr.entries.Store(&map[string]*entry{})
	s.perRequest = pr
	return nil
}

// part is what varies in the request's name: the one placeholder's value,
// or, with several, the name.
func (pr *perRequest) part(repl *caddy.Replacer) string {
	if pr.key == "" {
		return repl.ReplaceKnown(pr.template, "")
	}
	v, _ := repl.Get(pr.key)
	return caddy.ToString(v)
}

// name is the service name of a part.
func (pr *perRequest) name(part string) string {
	if pr.key == "" {
		return part
	}
	return pr.prefix + part + pr.suffix
}

// DiscoveryStatusVar is the request variable in which a per-request
// lookup that found no upstream leaves the status the request should get
// ("404", "503", "504"), for discovery_error and {http.vars.discovery_status}.
const DiscoveryStatusVar = "discovery_status"

// RetryAfterVar holds the Retry-After seconds of a 503 (see DiscoveryStatusVar).
const RetryAfterVar = "discovery_retry_after"

// lookupError is a per-request lookup's answer without upstreams.
type lookupError struct {
	status     int
	retryAfter int // seconds, with 503
	err        error
}

func (e *lookupError) Error() string { return e.err.Error() }
func (e *lookupError) Unwrap() error { return e.err }

// getUpstreams serves the request's service: from memory if it is
// followed already, else after a bounded first lookup.
func (pr *perRequest) getUpstreams(r *http.Request) ([]*reverseproxy.Upstream, error) {
	repl, _ := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	if repl == nil {
		return nil, errors.New("no replacer in the request's context")
	}
	part := pr.part(repl)
	if e := (*pr.entries.Load())[part]; e != nil && e.done.Load() && e.err == nil {
		if snap := e.src.pub.Load(); snap.Len() > 0 {
			if now := pr.clock.Load(); e.lastUse.Load() != now {
				e.lastUse.Store(now) // written once a second at most: no cache line bounce
			}
			pr.hits.Inc()
			return snap.Upstreams()
		}
	}
	ups, err := pr.lookup(r, part)
	if err != nil {
		var le *lookupError
		if errors.As(err, &le) {
			caddyhttp.SetVar(r.Context(), DiscoveryStatusVar, fmt.Sprint(le.status))
			if le.retryAfter > 0 {
				caddyhttp.SetVar(r.Context(), RetryAfterVar, fmt.Sprint(le.retryAfter))
			}
		}
	}
	return ups, err
}

// deny is the answer for a name the request may not have.
func (pr *perRequest) deny(outcome string, err error) error {
	lookups.WithLabelValues(pr.kind, outcome).Inc()
	return &lookupError{status: pr.cfg.DeniedStatus, err: err}
}

// lookup is the slow path: a name not followed yet, or not answered yet.
// The entries are keyed by part (see perRequest.part).
func (pr *perRequest) lookup(r *http.Request, part string) ([]*reverseproxy.Upstream, error) {
	name := pr.name(part)
	if err := CheckRequestName(name); err != nil {
		return nil, pr.deny(lookupInvalid, fmt.Errorf("service chosen by the request: %w", err))
	}
	if err := pr.check(name); err != nil {
		return nil, pr.deny(lookupInvalid, fmt.Errorf("service chosen by the request: %w", err))
	}
	if !pr.match.allows(name) {
		return nil, pr.deny(lookupDenied, fmt.Errorf("service chosen by the request: %q is not allowed (allow, deny)", name))
	}
	now := time.Now()
	pr.mu.Lock()
	if until, ok := pr.unknown[part]; ok {
		if now.Before(until) {
			pr.mu.Unlock()
			return nil, pr.deny(lookupUnknown, fmt.Errorf("service chosen by the request: %q is unknown to the registry", name))
		}
		delete(pr.unknown, part)
	}
	e, outcome := (*pr.entries.Load())[part], lookupHit
	if e == nil {
		var err error
		if e, err = pr.add(part, name, now); err != nil {
			pr.mu.Unlock()
			return nil, err
		}
		outcome = lookupNew
	}
	pr.mu.Unlock()
	timer := time.NewTimer(time.Duration(pr.cfg.FirstAnswerTimeout))
	defer timer.Stop()
	select {
	case <-e.ready:
	case <-timer.C:
		lookups.WithLabelValues(pr.kind, lookupTimeout).Inc()
		return nil, &lookupError{status: http.StatusGatewayTimeout,
			err: fmt.Errorf("service chosen by the request: %q: no answer from the registry within %s", name, time.Duration(pr.cfg.FirstAnswerTimeout))}
	case <-r.Context().Done():
		return nil, r.Context().Err()
	}
	if e.err != nil {
		lookups.WithLabelValues(pr.kind, lookupUnavailable).Inc()
		return nil, &lookupError{status: http.StatusServiceUnavailable, err: e.err}
	}
	snap := e.src.pub.Load()
	if snap.Len() == 0 && (snap.hasKind(KindNotFound) || snap.hasKind(KindNotSelected)) {
		pr.forget(part, e, now)
		return nil, pr.deny(lookupUnknown, fmt.Errorf("service chosen by the request: %q is unknown to the registry: %w", name, snap.Err()))
	}
	e.lastUse.Store(max(now.UnixNano(), pr.clock.Load()))
	lookups.WithLabelValues(pr.kind, outcome).Inc()
	return snap.Upstreams()
}

// add opens a new service, within the bounds, as the entry of part; the
// caller holds pr.mu.
func (pr *perRequest) add(part, name string, now time.Time) (*entry, error) {
	old := *pr.entries.Load()
	if len(old) >= pr.cfg.MaxServices && pr.evictIdle(now) == 0 {
		lookups.WithLabelValues(pr.kind, lookupOverLimit).Inc()
		return nil, &lookupError{status: http.StatusServiceUnavailable, retryAfter: 30,
			err: fmt.Errorf("service chosen by the request: %q: already following max_services (%d) services, none idle", name, pr.cfg.MaxServices)}
	}
	if pr.inFlight >= pr.cfg.MaxLookups {
		lookups.WithLabelValues(pr.kind, lookupOverLimit).Inc()
		return nil, &lookupError{status: http.StatusServiceUnavailable, retryAfter: 1,
			err: fmt.Errorf("service chosen by the request: %q: max_lookups (%d) new services are being looked up already", name, pr.cfg.MaxLookups)}
	}
	if pr.stopped {
		return nil, &lookupError{status: http.StatusServiceUnavailable, err: errors.New("upstream source is cleaned up")}
	}
	e := &entry{ready: make(chan struct{})}
	e.lastUse.Store(now.UnixNano())
	pr.put(part, e)
	pr.inFlight++
	pr.startJanitor()
	pr.running.Add(1)
	go pr.first(part, name, e)
	return e, nil
}

// first opens the entry's service, name, and waits for its first answer.
func (pr *perRequest) first(part, name string, e *entry) {
	start := time.Now()
	defer pr.running.Done()
	defer func() {
		pr.mu.Lock()
		pr.inFlight--
		pr.mu.Unlock()
	}()
	run, err := pr.open(&e.src, name)
	if err != nil {
		e.err = err
		e.done.Store(true)
		close(e.ready)
		pr.mu.Lock()
		pr.drop(part, e)
		pr.mu.Unlock()
		return
	}
	run() // the app has started, or starts the connection soon
	select {
	case <-e.src.pub.Answered():
		firstAnswerSeconds.WithLabelValues(pr.kind).Observe(time.Since(start).Seconds())
	case <-pr.stop:
	}
	e.done.Store(true)
	close(e.ready)
}

// forget drops a service the registry does not know and remembers it (by
// its part) as unknown for unknown_ttl.
func (pr *perRequest) forget(part string, e *entry, now time.Time) {
	pr.mu.Lock()
	defer pr.mu.Unlock()
	pr.unknown[part] = now.Add(time.Duration(pr.cfg.UnknownTTL))
	if len(pr.unknown) > 4*pr.cfg.MaxServices { // bounded: drop what has expired, else everything
		for n, until := range pr.unknown {
			if !now.Before(until) || len(pr.unknown) > 4*pr.cfg.MaxServices {
				delete(pr.unknown, n)
			}
		}
	}
	pr.drop(part, e)
}

// put and drop change the entries (keyed by part), copy on write; the
// caller holds pr.mu.
func (pr *perRequest) put(key string, e *entry) {
	old := *pr.entries.Load()
	next := make(map[string]*entry, len(old)+1)
	for k, v := range old {
		next[k] = v
	}
	next[key] = e
	pr.entries.Store(&next)
	watched.WithLabelValues(pr.kind).Inc()
}

func (pr *perRequest) drop(key string, e *entry) {
	old := *pr.entries.Load()
	if old[key] != e {
		return
	}
	next := make(map[string]*entry, len(old))
	for k, v := range old {
		if k != key {
			next[k] = v
		}
	}
	pr.entries.Store(&next)
	watched.WithLabelValues(pr.kind).Dec()
	_ = e.src.Cleanup() // it never waits on a registry
}

// evictIdle drops the services idle for idle_timeout and returns how many;
// the caller holds pr.mu.
func (pr *perRequest) evictIdle(now time.Time) int {
	n := 0
	idle := now.Add(-time.Duration(pr.cfg.IdleTimeout)).UnixNano()
	for name, e := range *pr.entries.Load() {
		select {
		case <-e.ready:
		default:
			continue // its first lookup runs
		}
		if e.lastUse.Load() < idle {
			pr.drop(name, e)
			evictions.WithLabelValues(pr.kind).Inc()
			n++
		}
	}
	return n
}

// startJanitor starts advancing the clock every second and dropping idle
// services every quarter of idle_timeout (at most every minute); the caller
// holds pr.mu.
func (pr *perRequest) startJanitor() {
	if pr.janitor != nil || pr.stopped {
		return
	}
	pr.clock.Store(time.Now().UnixNano())
	evictEvery := min(max(time.Duration(pr.cfg.IdleTimeout)/4, time.Second), time.Minute)
	pr.janitor = time.NewTicker(time.Second)
	pr.running.Add(1)
	go func() {
		defer pr.running.Done()
		lastEviction := time.Now()
		for {
			select {
			case now := <-pr.janitor.C:
				pr.clock.Store(now.UnixNano())
				if now.Sub(lastEviction) >= evictEvery {
					lastEviction = now
					pr.mu.Lock()
					pr.evictIdle(now)
					pr.mu.Unlock()
				}
			case <-pr.stop:
				return
			}
		}
	}()
}

// cleanup stops the janitor and the first lookups, and releases every
// service; nothing of it waits on a registry.
func (pr *perRequest) cleanup() {
	pr.mu.Lock()
	if pr.stopped {
		pr.mu.Unlock()
		return
	}
	pr.stopped = true
	close(pr.stop)
	if pr.janitor != nil {
		pr.janitor.Stop()
	}
	pr.mu.Unlock()
	pr.running.Wait()
	pr.mu.Lock()
	defer pr.mu.Unlock()
	for name, e := range *pr.entries.Load() {
		pr.drop(name, e)
	}
}

// Reference replaces the config-time placeholders of a source's service
// reference, such as {env.X} (with a nil repl, at adapt time, those of a
// new replacer), and checks p against what remains: request placeholders,
// such as {re.svc.1}, make the source serve services chosen per request
// (see HasRequestPlaceholders), which requires allow; without them, p's
// fields do not apply.
func (p PerRequest) Reference(repl *caddy.Replacer, ref string) (string, error) {
	if repl == nil {
		repl = caddy.NewReplacer()
	}
	ref = repl.ReplaceKnown(ref, "")
	return ref, p.Validate(HasRequestPlaceholders(ref))
}
