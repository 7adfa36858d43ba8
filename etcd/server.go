package etcd

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddy-discovery/caddy-discovery/redact"
	"github.com/caddy-discovery/caddy-discovery/upstreams"
)

// Defaults of Server.
const (
	defaultEndpoint    = "127.0.0.1:2379"
	defaultDialTimeout = 5 * time.Second
)

// servers are the named connections of the etcd app.
var servers = upstreams.Connections[Server]{App: "etcd", Kind: "server", Field: "server", Named: "etcd server %q"}

// Server says how to reach and authenticate to one etcd cluster.
//
// Every string field accepts placeholders such as {env.ETCD_PASSWORD}; they
// are replaced when the config is loaded. The password never appears in
// logs, errors or the admin API.
type Server struct {
	// The client URLs of the cluster's members, each `host:port` or
	// `http[s]://host:port`, as etcdctl's --endpoints. The client balances
	// over them and moves on from one that fails. Default:
	// ["127.0.0.1:2379"]
	Endpoints []string `json:"endpoints,omitempty"`

	// The user, when the cluster has authentication enabled (`etcdctl auth
	// enable`); it needs read permission on the services' key prefixes.
	Username string `json:"username,omitempty"`

	// The password of `username`. Prefer a placeholder such as
	// {env.ETCD_PASSWORD}.
	Password string `json:"password,omitempty"`

	// TLS: the members' certificates are always verified, against
	// `ca_file` (etcdctl's --cacert) or the system trust store; `cert_file`
	// and `key_file` (etcdctl's --cert and --key) for clusters that verify
	// clients (--client-cert-auth).
	upstreams.ClientTLS

	// How long connecting (and logging in) may take before it is retried,
	// and one read of a service's keys. Default: 5s
	DialTimeout caddy.Duration `json:"dial_timeout,omitempty"`
}

// IsSet reports whether any field is set, i.e. whether a source brings a
// connection of its own.
func (s Server) IsSet() bool {
	return len(s.Endpoints) > 0 || s.Username != "" || s.Password != "" || s.ClientTLS.Wanted() || s.DialTimeout != 0
}

// Validate checks that the fields fit together; field names in the errors
// are those of the config. Values with placeholders are checked once
// replaced. It reads no file.
func (s Server) Validate() error {
	for _, e := range s.Endpoints {
		if strings.Contains(e, "{") {
			continue
		}
		if _, err := parseEndpoint(e); err != nil {
			return fmt.Errorf("endpoints: %w", err)
		}
	}
	switch {
	case (s.Username == "") != (s.Password == ""):
		return errors.New("username and password go together; set both or neither")
	case !strings.Contains(s.Username, "{") && strings.Contains(s.Username, ":"):
		return errors.New("username: holds ':', which etcd user names cannot; use the user's name alone")
	case s.DialTimeout < 0:
		return fmt.Errorf("dial_timeout: %s is negative; give a positive duration such as 5s", time.Duration(s.DialTimeout))
	}
	return s.ClientTLS.Validate()
}

// Expand replaces placeholders such as {env.X} in every string field.
func (s Server) Expand(repl *caddy.Replacer) (Server, error) {
	err := upstreams.ExpandList(repl, "endpoints", &s.Endpoints)
	if err == nil {
		err = upstreams.ExpandFields(repl, append([]upstreams.Field{{Name: "username", Value: &s.Username}, {Name: "password", Value: &s.Password, Secret: true}},
			s.ClientTLS.Fields()...)...)
	}
	return s, err
}

// endpoint is one parsed entry of Endpoints.
type endpoint struct {
	https bool
	host  string // host:port
}

// parseEndpoint reads host:port or http[s]://host:port. Errors show the
// endpoint with any credentials in it redacted.
func parseEndpoint(s string) (endpoint, error) {
	var e endpoint
	shown := redact.Address(s)
	hostport := s
	if strings.Contains(s, "://") {
		u, err := url.Parse(s)
		if err != nil {
			return e, fmt.Errorf("%q is not a URL such as http://10.0.0.1:2379", shown)
		}
		switch u.Scheme {
		case "http":
		case "https":
			e.https = true
		default:
			return e, fmt.Errorf("%q: scheme must be http or https", shown)
		}
		if u.User != nil || u.RawQuery != "" || u.Fragment != "" || strings.Trim(u.Path, "/") != "" {
			return e, fmt.Errorf("%q: only scheme, host and port are allowed (credentials go in username and password)", shown)
		}
		hostport = u.Host
	} else if strings.ContainsAny(s, "/?#@") {
		return e, fmt.Errorf("%q is neither host:port nor a URL such as http://10.0.0.1:2379", shown)
	}
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		return e, fmt.Errorf("%q: give the port too, such as 10.0.0.1:2379", shown)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return e, fmt.Errorf("%q: port %q is not a number in 1-65535", shown, port)
	}
	if host == "" {
		return e, fmt.Errorf("%q: empty host", shown)
	}
	e.host = hostport
	return e, nil
}

// settings is a resolved Server: what a pooled client is made of.
type settings struct {
	endpoints []string // as the etcd client takes them: host:port, or https://host:port
	hosts     []string // host:port
	where     string   // for messages: "etcd at 10.0.0.1:2379"
	conn      string   // the connection label of the metrics
	username  string
	password  string
	tls       *tls.Config // nil: plain
	tlsKey    string      // the TLS settings, for the fingerprint
	timeout   time.Duration
}

// settings resolves the server's (placeholder-free, validated) fields,
// named name in the etcd app ("" for a source's own fields). It reads the
// TLS files, to report what is wrong with them when the config loads, but
// makes no request.
func (s Server) settings(name string) (settings, error) {
	eps := s.Endpoints
	if len(eps) == 0 {
		eps = []string{defaultEndpoint}
	}
	var parsed []endpoint
	tlsOn := s.ClientTLS.Wanted()
	for _, e := range eps {
		p, err := parseEndpoint(e)
		if err != nil {
			return settings{}, fmt.Errorf("endpoints: %w", err)
		}
		tlsOn = tlsOn || p.https
		parsed = append(parsed, p)
	}
	st := settings{username: s.Username, password: s.Password, timeout: cmpDuration(s.DialTimeout, defaultDialTimeout)}
	var hosts []string
	for _, p := range parsed {
		hosts = append(hosts, p.host)
		if tlsOn {
			st.endpoints = append(st.endpoints, "https://"+p.host)
		} else {
			st.endpoints = append(st.endpoints, p.host)
		}
	}
	st.hosts = hosts
	st.where = "etcd at " + strings.Join(hosts, ", ")
	st.conn = strings.Join(hosts, ",")
	if name != "" {
		st.where = fmt.Sprintf("etcd server %q at %s", name, strings.Join(hosts, ", "))
		st.conn = name
	}
	if tlsOn {
		cfg, err := s.ClientTLS.Config()
		if err != nil {
			return settings{}, err
		}
		st.tls = cfg
		st.tlsKey = s.ClientTLS.Key()
	}
	return st, nil
}

// fingerprint identifies the connection, named name in the etcd app (""
// for a source's own fields), without holding any secret: equal
// fingerprints share one client.
func (st settings) fingerprint(name string) string {
	return upstreams.Fingerprint(append([]string{name, st.username, st.password, fmt.Sprint(st.tls != nil), st.tlsKey, st.timeout.String()}, st.endpoints...)...)
}

// cmpDuration is d, or def when d is zero.
func cmpDuration(d caddy.Duration, def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return time.Duration(d)
}
