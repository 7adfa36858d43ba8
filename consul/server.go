package consul

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddy-discovery/caddy-discovery/redact"
	"github.com/caddy-discovery/caddy-discovery/upstreams"
)

// defaultPort is the Consul agent's HTTP port, for addresses written without
// one and without a scheme.
const defaultPort = 8500

// defaultAddress is the local Consul agent, where Consul expects its clients
// to ask.
const defaultAddress = "127.0.0.1:8500"

// servers are the named connections of the consul app.
var servers = upstreams.Connections[Server]{App: "consul", Kind: "server", Field: "server", Named: "consul server %q"}

// Server says how to reach and authenticate to one Consul agent or server
// cluster.
//
// Every string field accepts placeholders such as {env.CONSUL_HTTP_TOKEN};
// they are replaced when the config is loaded. The token never appears in
// logs, errors or the admin API. Unlike the Consul CLI, Caddy does not read
// CONSUL_HTTP_* environment variables by itself: write them as placeholders.
type Server struct {
	// The HTTP API addresses of the Consul agent or of servers of one
	// cluster, each `host[:port]` (port default 8500) or a URL
	// `http[s]://host[:port][/path-prefix]` (port default: the scheme's).
	// Requests go to the first that answers; after a connection error
	// the next one is tried. Default: ["127.0.0.1:8500"], the local agent.
	Addresses []string `json:"addresses,omitempty"`

	// An ACL token (secret ID) that may read the service and its nodes:
	// its policy needs `service "<name>" { policy = "read" }` and
	// `node_prefix "" { policy = "read" }`. Prefer `token_file` or a
	// placeholder such as {env.CONSUL_HTTP_TOKEN}. Default: no token (the
	// agent's default token, or anonymous).
	Token string `json:"token,omitempty"`

	// A file that holds the ACL token, as written by Vault Agent or
	// `consul acl token create ... -format=json | jq -r .SecretID`. It is
	// read again as soon as it changes; an ongoing long-poll restarts with
	// the new token.
	TokenFile string `json:"token_file,omitempty"`

	// TLS: the servers' certificates are always verified, against
	// `ca_file` (as the Consul CLI's -ca-file) or the system trust store;
	// `cert_file` and `key_file` for servers that verify clients
	// (verify_incoming); `tls_server_name` e.g. "server.dc1.consul" when
	// addresses are IPs.
	upstreams.ClientTLS
}

// IsSet reports whether any field is set, i.e. whether a source brings a
// connection of its own.
func (s Server) IsSet() bool {
	return len(s.Addresses) > 0 || s.Token != "" || s.TokenFile != "" || s.ClientTLS.Wanted()
}

// Validate checks that the fields fit together; field names in the errors
// are those of the config. Values with placeholders are checked once
// replaced. It reads no file.
func (s Server) Validate() error {
	tlsOn := s.ClientTLS.Wanted()
	var plain, secure string // an http:// and an https:// address
	for _, a := range s.Addresses {
		if strings.Contains(a, "{") {
			continue
		}
		addr, err := parseAddress(a)
		if err != nil {
			return fmt.Errorf("addresses: %w", err)
		}
		if addr.explicitHTTP && tlsOn {
			return fmt.Errorf("addresses: %q is http:// but TLS is set (tls, ca_file, cert_file, key_file or tls_server_name); write https://, or remove the TLS settings",
				redact.Address(a))
		}
		switch {
		case addr.explicitHTTP:
			plain = a
		case addr.https:
			secure = a
		}
	}
	if plain != "" && secure != "" {
		return fmt.Errorf("addresses: %q is http:// and %q is https://; use one scheme", redact.Address(plain), redact.Address(secure))
	}
	if s.Token != "" && s.TokenFile != "" {
		return errors.New("token and token_file are both set; set only one")
	}
	return s.ClientTLS.Validate()
}

// Expand replaces placeholders such as {env.X} in every string field.
func (s Server) Expand(repl *caddy.Replacer) (Server, error) {
	err := upstreams.ExpandList(repl, "addresses", &s.Addresses)
	if err == nil {
		err = upstreams.ExpandFields(repl, append([]upstreams.Field{{Name: "token", Value: &s.Token, Secret: true}, {Name: "token_file", Value: &s.TokenFile}},
			s.ClientTLS.Fields()...)...)
	}
	return s, err
}

// address is one parsed entry of Addresses.
type address struct {
	https        bool
	explicitHTTP bool   // written as http://
	host         string // host:port, as dialed
	pathPrefix   string // "" or "/prefix"
}

// String is the address as messages and metrics show it: host:port, with
// the scheme and path prefix when they are not the default.
func (a address) String() string {
	s := a.host + a.pathPrefix
	if a.https {
		return "https://" + s
	}
	if a.pathPrefix != "" {
		return "http://" + s
	}
	return s
}

// parseAddress reads host[:port] or http[s]://host[:port][/path]. Errors
// show the address with any credentials in it redacted.
func parseAddress(s string) (address, error) {
	var a address
	shown := redact.Address(s)
	hostport := s
	port := strconv.Itoa(defaultPort)
	if strings.Contains(s, "://") {
		u, err := url.Parse(s)
		if err != nil {
			// url.Parse's error repeats the whole URL, credentials included
			return a, fmt.Errorf("%q is not a URL such as http://10.0.0.1:8500", shown)
		}
		switch u.Scheme {
		case "http":
			a.explicitHTTP = true
			port = "80"
		case "https":
			a.https = true
			port = "443"
		default:
			return a, fmt.Errorf("%q: scheme must be http or https", shown)
		}
		if u.User != nil || u.RawQuery != "" || u.Fragment != "" || u.Opaque != "" {
			return a, fmt.Errorf("%q: only scheme, host, port and path are allowed (the ACL token goes in token or token_file)", shown)
		}
		hostport = u.Host
		a.pathPrefix = strings.TrimRight(u.Path, "/")
	} else if strings.ContainsAny(s, "/?#@") {
		return a, fmt.Errorf("%q is neither host:port nor a URL such as http://10.0.0.1:8500", shown)
	}
	host, p, err := net.SplitHostPort(hostport)
	if err != nil {
		host = strings.TrimSuffix(strings.TrimPrefix(hostport, "["), "]")
		if strings.Contains(host, ":") && net.ParseIP(host) == nil {
			return a, fmt.Errorf("%q: %q is not host:port", shown, hostport)
		}
	} else {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 {
			return a, fmt.Errorf("%q: port %q is not a number in 1-65535", shown, p)
		}
		port = p
	}
	if host == "" || strings.ContainsAny(host, " \t") {
		return a, fmt.Errorf("%q: empty or invalid host", shown)
	}
	a.host = net.JoinHostPort(host, port)
	return a, nil
}

// endpoint is a resolved Server: what a pooled client is made of.
type endpoint struct {
	addrs     []address
	token     string // a static token, or ""
	tokenFile string
	tls       *tls.Config // nil: plain HTTP
	// tlsKey identifies the TLS settings (file names and server name), for
	// the fingerprint.
	tlsKey string
}

// endpoint resolves the server's (placeholder-free, validated) fields. It
// reads the TLS files and the token file, to report what is wrong with them
// when the config loads, but makes no request.
func (s Server) endpoint() (endpoint, error) {
	addrs := s.Addresses
	if len(addrs) == 0 {
		addrs = []string{defaultAddress}
	}
	var e endpoint
	anyHTTPS := false
	for _, a := range addrs {
		p, err := parseAddress(a)
		if err != nil {
			return e, fmt.Errorf("addresses: %w", err)
		}
		anyHTTPS = anyHTTPS || p.https
		e.addrs = append(e.addrs, p)
	}
	tlsOn := s.ClientTLS.Wanted() || anyHTTPS
	for i := range e.addrs {
		if tlsOn && e.addrs[i].explicitHTTP {
			return e, fmt.Errorf("addresses: %q is http:// but others are https:// or TLS is set; use one scheme", e.addrs[i])
		}
		e.addrs[i].https = tlsOn
	}
	e.token, e.tokenFile = s.Token, s.TokenFile
	if s.TokenFile != "" {
		if _, err := newTokenFile(s.TokenFile).Get(); err != nil {
			return e, err
		}
	}
	if !tlsOn {
		return e, nil
	}
	cfg, err := s.ClientTLS.Config()
	if err != nil {
		return e, err
	}
	e.tls = cfg
	e.tlsKey = s.ClientTLS.Key()
	return e, nil
}

// fingerprint identifies the connection, named name in the consul app (""
// for a source's own fields): its addresses, TLS settings and identity,
// without holding any secret. Equal fingerprints share one client.
func (e endpoint) fingerprint(name string) string {
	parts := []string{name, e.token, e.tokenFile, fmt.Sprint(e.tls != nil), e.tlsKey}
	for _, a := range e.addrs {
		parts = append(parts, fmt.Sprintf("%t|%s|%s", a.https, a.host, a.pathPrefix))
	}
	return upstreams.Fingerprint(parts...)
}

// where names the addresses for messages: `consul at 127.0.0.1:8500`, or
// `consul server "prod" at ...` for a server of the consul app.
func (e endpoint) where(name string) string {
	addrs := make([]string, len(e.addrs))
	for i, a := range e.addrs {
		addrs[i] = a.String()
	}
	if name != "" {
		return fmt.Sprintf("consul server %q at %s", name, strings.Join(addrs, ", "))
	}
	return "consul at " + strings.Join(addrs, ", ")
}

// connectionName is the connection label of the metrics: the server's name
// in the consul app, else its addresses (which never hold credentials:
// they are refused).
func (e endpoint) connectionName(name string) string {
	if name != "" {
		return name
	}
	addrs := make([]string, len(e.addrs))
	for i, a := range e.addrs {
		addrs[i] = a.String()
	}
	return strings.Join(addrs, ",")
}
