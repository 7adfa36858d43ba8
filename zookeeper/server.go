package zookeeper

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddy-discovery/caddy-discovery/redact"
	"github.com/caddy-discovery/caddy-discovery/upstreams"
)

// Defaults of Server.
const (
	defaultServer         = "127.0.0.1:2181"
	defaultSessionTimeout = 10 * time.Second
	defaultRelistInterval = time.Minute
)

// servers are the named connections of the zookeeper app.
var servers = upstreams.Connections[Server]{App: "zookeeper", Kind: "server", Field: "server", Named: "zookeeper server %q"}

// Server says how to reach and authenticate to one ZooKeeper ensemble.
//
// Every string field accepts placeholders such as {env.ZK_PASSWORD}; they
// are replaced when the config is loaded. The password never appears in
// logs, errors or the admin API.
type Server struct {
	// The ensemble's servers, each host:port, as a ZooKeeper connect string
	// lists them (a chroot goes in a source's `base_path`, not here).
	// Default: ["127.0.0.1:2181"]
	Servers []string `json:"servers,omitempty"`

	// How long the session outlives a lost connection: ZooKeeper deletes
	// the ephemeral nodes of a session it has not heard from for this long,
	// so registrars use it too. The server bounds it to 2-20 ticks (4-40 s
	// by default). Default: 10s
	SessionTimeout caddy.Duration `json:"session_timeout,omitempty"`

	// A user of ZooKeeper's digest authentication, for nodes whose ACL
	// allows reading only to it (Curator's and zkCli's `addauth digest
	// user:password`).
	Username string `json:"username,omitempty"`

	// The password of `username`. Prefer a placeholder such as
	// {env.ZK_PASSWORD}.
	Password string `json:"password,omitempty"`

	// How often each watched path is listed again, as a safety net behind
	// ZooKeeper's watches (which deliver every change, and are re-armed
	// after each). A negative value disables it. Default: 1m
	RelistInterval caddy.Duration `json:"relist_interval,omitempty"`

	// TLS, to the servers' secureClientPort (ZooKeeper 3.5+ with
	// serverCnxnFactory=org.apache.zookeeper.server.NettyServerCnxnFactory):
	// the servers' certificates are always verified, against `ca_file` or
	// the system trust store; `cert_file` and `key_file` for servers that
	// verify clients (ssl.clientAuth=need, the default).
	upstreams.ClientTLS
}

// IsSet reports whether any field is set, i.e. whether a source brings a
// connection of its own.
func (s Server) IsSet() bool {
	return len(s.Servers) > 0 || s.SessionTimeout != 0 || s.Username != "" || s.Password != "" || s.RelistInterval != 0 || s.ClientTLS.Wanted()
}

// Validate checks that the fields fit together; field names in the errors
// are those of the config. Values with placeholders are checked once
// replaced.
func (s Server) Validate() error {
	for _, a := range s.Servers {
		if strings.Contains(a, "{") {
			continue
		}
		if err := checkServer(a); err != nil {
			return fmt.Errorf("servers: %w", err)
		}
	}
	switch {
	case (s.Username == "") != (s.Password == ""):
		return errors.New("username and password go together; set both or neither")
	case !strings.Contains(s.Username, "{") && strings.Contains(s.Username, ":"):
		return errors.New("username: holds ':', which digest authentication cannot send; use a user without one")
	case s.SessionTimeout < 0:
		return fmt.Errorf("session_timeout: %s is negative; give a duration such as 10s", time.Duration(s.SessionTimeout))
	case s.SessionTimeout != 0 && time.Duration(s.SessionTimeout) < time.Second:
		return fmt.Errorf("session_timeout: %s is too short; use 1s or more", time.Duration(s.SessionTimeout))
	}
	return s.ClientTLS.Validate()
}

// checkServer checks one host:port. Its errors show the address with any
// user:password@ hidden.
func checkServer(a string) error {
	shown := redact.Address(a)
	if strings.Contains(a, "@") {
		return fmt.Errorf("%q: credentials go in username and password, not in servers", shown)
	}
	host, port, err := net.SplitHostPort(a)
	if err != nil || host == "" || strings.ContainsAny(a, "/?#") {
		return fmt.Errorf("%q is not host:port such as 10.0.0.1:2181 (a chroot goes in base_path)", shown)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("%q: port %q is not a number in 1-65535", shown, port)
	}
	return nil
}

// Expand replaces placeholders such as {env.X} in every string field.
func (s Server) Expand(repl *caddy.Replacer) (Server, error) {
	err := upstreams.ExpandList(repl, "servers", &s.Servers)
	if err == nil {
		err = upstreams.ExpandFields(repl, append([]upstreams.Field{{Name: "username", Value: &s.Username}, {Name: "password", Value: &s.Password, Secret: true}},
			s.ClientTLS.Fields()...)...)
	}
	return s, err
}

// settings is a resolved Server: what a pooled session is made of.
type settings struct {
	servers  []string
	timeout  time.Duration
	relist   time.Duration // 0: off
	username string
	password string
	tls      *tls.Config // nil: plain
	tlsKey   string      // the TLS settings, for the fingerprint
	where    string      // for messages
	conn     string      // the connection label of the metrics
}

// settings resolves the server's (placeholder-free, validated) fields,
// named name in the zookeeper app ("" for a source's own fields). It reads
// the TLS files, to report what is wrong with them when the config loads,
// but makes no request.
func (s Server) settings(name string) (settings, error) {
	st := settings{servers: s.Servers, username: s.Username, password: s.Password, timeout: time.Duration(s.SessionTimeout)}
	if len(st.servers) == 0 {
		st.servers = []string{defaultServer}
	}
	if st.timeout == 0 {
		st.timeout = defaultSessionTimeout
	}
	switch st.relist = time.Duration(s.RelistInterval); {
	case st.relist == 0:
		st.relist = defaultRelistInterval
	case st.relist < 0:
		st.relist = 0
	}
	list := strings.Join(st.servers, ",")
	st.where, st.conn = "zookeeper at "+list, list
	if name != "" {
		st.where, st.conn = fmt.Sprintf("zookeeper server %q at %s", name, list), name
	}
	if s.ClientTLS.Wanted() {
		cfg, err := s.ClientTLS.Config()
		if err != nil {
			return settings{}, err
		}
		st.tls, st.tlsKey = cfg, s.ClientTLS.Key()
	}
	return st, nil
}

// fingerprint identifies the connection, named name in the zookeeper app
// ("" for a source's own fields), without holding any secret: equal
// fingerprints share one session.
func (st settings) fingerprint(name string) string {
	return upstreams.Fingerprint(append([]string{name, st.username, st.password, st.timeout.String(), st.relist.String(), fmt.Sprint(st.tls != nil), st.tlsKey},
		st.servers...)...)
}
