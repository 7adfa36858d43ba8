package eureka

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddy-discovery/caddy-discovery/upstreams"
)

// defaultURL is the Eureka API that sources without any connection setting
// read: a local Spring Cloud Eureka server.
const defaultURL = "http://127.0.0.1:8761/eureka"

// servers are the named connections of the eureka app.
var servers = upstreams.Connections[Server]{App: "eureka", Kind: "server", Field: "server", Named: "eureka server %q"}

// Server is a connection to a set of Eureka servers: the registry's API
// URLs, tried in order, and how to talk to them.
type Server struct {
	// The base URLs of the Eureka REST API, up to and without /apps: e.g.
	// http://eureka:8761/eureka (Spring Cloud), http://eureka:8080/eureka/v2
	// (Netflix) or http://polaris:8761/eureka. Servers of one registry (its
	// peers): a failing one's request goes to the next, and Caddy stays with
	// the one that answers. They must not hold credentials: use username and
	// password. Default: http://127.0.0.1:8761/eureka
	URLs []string `json:"urls,omitempty"`

	// HTTP basic authentication, when the servers require it. Supports
	// placeholders such as {env.EUREKA_PASSWORD}.
	Username string `json:"username,omitempty"`
	Password string `json:"password,omitempty"`

	// A PEM file of the certificate authorities that sign the servers'
	// certificates, for https URLs. Certificates are verified; without this,
	// against the system's roots.
	CAFile string `json:"ca_file,omitempty"`

	// How long one request to one server may take, reading the answer
	// included. Default: 10s
	Timeout caddy.Duration `json:"timeout,omitempty"`

	// How often Caddy asks for changes (GET /apps/delta; the whole registry
	// when the delta's hash code does not match, as Eureka clients do).
	// Eureka is pull-based: a change reaches Caddy within this interval
	// plus the server's own cache refresh. Default: 5s
	RefreshInterval caddy.Duration `json:"refresh_interval,omitempty"`
}

// IsSet reports whether any connection field is set.
func (s Server) IsSet() bool {
	return len(s.URLs) > 0 || s.Username != "" || s.Password != "" || s.CAFile != "" || s.Timeout != 0 || s.RefreshInterval != 0
}

// Validate checks the fields that hold no placeholder. It reads no file.
func (s Server) Validate() error {
	for _, u := range s.URLs {
		if strings.Contains(u, "{") {
			continue
		}
		if _, err := parseServer(u); err != nil {
			return errors.New("urls: " + strings.TrimPrefix(err.Error(), "eureka: "))
		}
	}
	if !strings.Contains(s.Username, "{") && strings.Contains(s.Username, ":") {
		return errors.New("username: holds ':', which HTTP basic authentication cannot send; use a user without one")
	}
	if s.Timeout < 0 {
		return fmt.Errorf("timeout: %s is negative; give a positive duration such as 5s", time.Duration(s.Timeout))
	}
	if s.RefreshInterval < 0 {
		return fmt.Errorf("refresh_interval: %s is negative; give a positive duration such as 5s", time.Duration(s.RefreshInterval))
	}
	if s.RefreshInterval != 0 && time.Duration(s.RefreshInterval) < 100*time.Millisecond {
		return fmt.Errorf("refresh_interval: %s is too short; use 100ms or more", time.Duration(s.RefreshInterval))
	}
	return nil
}

// Expand replaces placeholders, and sets the default URL where there is
// none.
func (s Server) Expand(repl *caddy.Replacer) (Server, error) {
	err := upstreams.ExpandList(repl, "urls", &s.URLs)
	if err == nil {
		err = upstreams.ExpandFields(repl, upstreams.Field{Name: "username", Value: &s.Username},
			upstreams.Field{Name: "password", Value: &s.Password, Secret: true}, upstreams.Field{Name: "ca_file", Value: &s.CAFile})
	}
	if len(s.URLs) == 0 {
		s.URLs = []string{defaultURL}
	}
	return s, err
}

// config turns the (expanded, validated) fields into a client config; it
// reads the CA file.
func (s Server) config() (Config, error) {
	cfg := Config{
		Servers:  s.URLs,
		Username: s.Username,
		Password: s.Password,
		Timeout:  time.Duration(s.Timeout),
	}
	if s.CAFile != "" {
		tc, err := upstreams.ClientTLS{CAFile: s.CAFile}.Config()
		if err != nil {
			return cfg, err
		}
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.TLSClientConfig = tc
		cfg.Transport = t
	}
	return cfg, nil
}

// fingerprint identifies the connection, named name in the eureka app (""
// for a source's own fields), for sharing: equal fingerprints share one
// poller. It holds no secret.
func (s Server) fingerprint(name string) string {
	return upstreams.Fingerprint(append([]string{name, s.Username, s.Password, s.CAFile,
		time.Duration(s.Timeout).String(), time.Duration(s.RefreshInterval).String()}, s.URLs...)...)
}

// where names the connection in messages and metrics: its name in the
// eureka app, else its URLs (which hold no credentials).
func (s Server) where(name string) string {
	if name != "" {
		return name
	}
	return strings.Join(s.URLs, ",")
}
