package nacos

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/nacos-group/nacos-sdk-go/v2/common/constant"
	"github.com/nacos-group/nacos-sdk-go/v2/vo"

	"github.com/caddy-discovery/caddy-discovery/redact"
	"github.com/caddy-discovery/caddy-discovery/upstreams"
)

// Defaults of Server.
const (
	defaultPort              = 8848
	defaultContextPath       = "/nacos"
	defaultTimeout           = 5 * time.Second
	defaultReconcileInterval = 30 * time.Second
	// defaultReconcileRate keeps the 30 s round up to 1,200 services
	// through one client; more take longer (10,000: 250 s).
	defaultReconcileRate = 40
)

// servers are the named connections of the nacos app.
var servers = upstreams.Connections[Server]{App: "nacos", Kind: "server", Field: "server", Named: "nacos server %q"}

// Server says how to reach and authenticate to one Nacos server or cluster.
//
// Every string field accepts placeholders such as {env.NACOS_PASSWORD};
// they are replaced when the config is loaded. Secrets (password,
// secret_key) never appear in logs or error messages.
type Server struct {
	// The addresses of the Nacos servers of one cluster, each as
	// `host[:port]` or a URL `http[s]://host[:port][/context-path]`, e.g.
	// "10.0.0.1:8848" or "https://nacos.internal/nacos". Caddy talks to
	// them over gRPC (subscriptions and queries) at the port plus 1000, or
	// `grpc_port`, and over HTTP at the port (login). Default port: 8848.
	// Default context path: /nacos. Default: ["127.0.0.1:8848"]
	Addresses []string `json:"addresses,omitempty"`

	// The gRPC port of every address, when it is not the HTTP port plus
	// 1000 (Nacos's fixed offset). Default: HTTP port + 1000
	GRPCPort int `json:"grpc_port,omitempty"`

	// The namespace ID (not its display name) to look services up in.
	// A source's reference or its own `namespace` takes precedence.
	// Default: "" (Nacos's public namespace)
	Namespace string `json:"namespace,omitempty"`

	// The user name for Nacos authentication (`nacos.core.auth.enabled`).
	// Caddy logs in with `username` and `password` and renews the token by
	// itself. Default: no authentication.
	Username string `json:"username,omitempty"`

	// The password of `username`. Prefer a placeholder such as
	// {env.NACOS_PASSWORD} over writing it into the config.
	Password string `json:"password,omitempty"`

	// An access key for Alibaba Cloud MSE / RAM authentication, used with
	// `secret_key` instead of `username` and `password`.
	AccessKey string `json:"access_key,omitempty"`

	// The secret key of `access_key`. Prefer a placeholder such as
	// {env.NACOS_SECRET_KEY}.
	SecretKey string `json:"secret_key,omitempty"`

	// Connects with TLS, for gRPC and HTTP alike. Implied when an address
	// is an https:// URL. The server's certificate is verified against the
	// system trust store, or `ca_file`. Default: false
	TLS bool `json:"tls,omitempty"`

	// A PEM file with the CA certificate(s) that signed the servers'
	// certificates, in addition to the system trust store. Implies `tls`.
	CAFile string `json:"ca_file,omitempty"`

	// Skips verification of the servers' TLS certificates. Insecure:
	// anyone on the path can then read the credentials and forge instance
	// lists. Only for tests. Implies `tls`.
	InsecureSkipVerify bool `json:"insecure_skip_verify,omitempty"`

	// How long one request to the server (login, subscribe, query) may
	// take. Default: 5s
	Timeout caddy.Duration `json:"timeout,omitempty"`

	// How often every subscription is re-read from the server, as a safety
	// net behind the server's push: the Go SDK is known to miss pushes after
	// a server restart (nacos-sdk-go #683, #736). Subscriptions are also
	// re-read as soon as a lost connection comes back. A negative value
	// disables the periodic re-read (not the one after reconnecting).
	// Sources that reach the same servers, namespace and credentials share
	// one connection whatever their interval; a subscription shared by
	// several sources is re-read at the smallest interval among them (not
	// at all only if every one of them disables it). Default: 30s
	ReconcileInterval caddy.Duration `json:"reconcile_interval,omitempty"`
}

// IsSet reports whether any connection field is set, i.e. whether a source
// brings a connection of its own (Namespace is not a connection field: a
// source sets it beside a named server).
func (s Server) IsSet() bool {
	s.Namespace = ""
	return len(s.Addresses) > 0 || s.GRPCPort != 0 || s.Username != "" || s.Password != "" ||
		s.AccessKey != "" || s.SecretKey != "" || s.TLS || s.CAFile != "" || s.InsecureSkipVerify ||
		s.Timeout != 0 || s.ReconcileInterval != 0
}

// Validate checks that the fields fit together; field names in the errors are
// those of the config. Values with placeholders are checked once replaced.
func (s Server) Validate() error {
	for _, a := range s.Addresses {
		if strings.Contains(a, "{") {
			continue
		}
		if _, err := parseAddress(a); err != nil {
			return fmt.Errorf("addresses: %w", err)
		}
	}
	if s.GRPCPort < 0 || s.GRPCPort > 65535 {
		return fmt.Errorf("grpc_port: %d is out of range 1-65535", s.GRPCPort)
	}
	if (s.Username == "") != (s.Password == "") {
		return errors.New("username and password go together; set both or neither")
	}
	if (s.AccessKey == "") != (s.SecretKey == "") {
		return errors.New("access_key and secret_key go together; set both or neither")
	}
	if !strings.Contains(s.Namespace, "{") {
		if err := validateName("namespace", s.Namespace); err != nil {
			return fmt.Errorf("namespace: %w", err)
		}
	}
	if s.Timeout < 0 {
		return errors.New("timeout: must be positive")
	}
	return nil
}

// Expand replaces placeholders such as {env.X} in every string field.
func (s Server) Expand(repl *caddy.Replacer) (Server, error) {
	err := upstreams.ExpandList(repl, "addresses", &s.Addresses)
	if err == nil {
		err = upstreams.ExpandFields(repl, upstreams.Field{Name: "namespace", Value: &s.Namespace}, upstreams.Field{Name: "username", Value: &s.Username},
			upstreams.Field{Name: "password", Value: &s.Password, Secret: true}, upstreams.Field{Name: "access_key", Value: &s.AccessKey, Secret: true},
			upstreams.Field{Name: "secret_key", Value: &s.SecretKey, Secret: true}, upstreams.Field{Name: "ca_file", Value: &s.CAFile})
	}
	return s, err
}

// address is one parsed entry of Addresses.
type address struct {
	scheme, host, contextPath string
	port                      int
}

// parseAddress reads host[:port] or http[s]://host[:port][/path]. Errors
// show the address with any credentials in it redacted.
func parseAddress(s string) (address, error) {
	a := address{scheme: "http", port: defaultPort, contextPath: defaultContextPath}
	shown := redact.Address(s)
	hostport := s
	if strings.Contains(s, "://") {
		u, err := url.Parse(s)
		if err != nil {
			// url.Parse's error repeats the whole URL, credentials included
			return a, fmt.Errorf("%q is not a URL such as http://10.0.0.1:8848/nacos", shown)
		}
		if u.Scheme != "http" && u.Scheme != "https" {
			return a, fmt.Errorf("%q: scheme must be http or https", shown)
		}
		if u.User != nil || u.RawQuery != "" || u.Fragment != "" {
			return a, fmt.Errorf("%q: only scheme, host, port and path are allowed (credentials go in username and password, or access_key and secret_key)", shown)
		}
		a.scheme, hostport = u.Scheme, u.Host
		if p := strings.TrimRight(u.Path, "/"); p != "" {
			a.contextPath = p
		}
	} else if strings.ContainsAny(s, "/?#@") {
		return a, fmt.Errorf("%q is neither host:port nor a URL such as http://10.0.0.1:8848/nacos", shown)
	}
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		host = strings.TrimSuffix(strings.TrimPrefix(hostport, "["), "]")
	} else {
		n, err := strconv.Atoi(port)
		if err != nil || n < 1 || n > 65535 {
			return a, fmt.Errorf("%q: port %q is not a number in 1-65535", shown, port)
		}
		a.port = n
	}
	if host == "" {
		return a, fmt.Errorf("%q: empty host", shown)
	}
	a.host = host
	return a, nil
}

// tlsEnabled reports whether the connection uses TLS.
func (s Server) tlsEnabled(addrs []address) bool {
	if s.TLS || s.CAFile != "" || s.InsecureSkipVerify {
		return true
	}
	for _, a := range addrs {
		if a.scheme == "https" {
			return true
		}
	}
	return false
}

// clientParam builds the SDK configuration for the server with the given
// (placeholder-free, validated) fields. It reads ca_file but makes no request.
func (s Server) clientParam(namespace string) (vo.NacosClientParam, error) {
	addrs := s.Addresses
	if len(addrs) == 0 {
		addrs = []string{"127.0.0.1:8848"}
	}
	parsed := make([]address, 0, len(addrs))
	for _, a := range addrs {
		p, err := parseAddress(a)
		if err != nil {
			return vo.NacosClientParam{}, fmt.Errorf("addresses: %w", err)
		}
		parsed = append(parsed, p)
	}
	tlsOn := s.tlsEnabled(parsed)
	servers := make([]constant.ServerConfig, len(parsed))
	for i, a := range parsed {
		scheme := a.scheme
		if tlsOn {
			scheme = "https"
		}
		grpc := a.port + constant.RpcPortOffset
		if s.GRPCPort != 0 {
			grpc = s.GRPCPort
		}
		if grpc > 65535 {
			return vo.NacosClientParam{}, fmt.Errorf("addresses: %q: the gRPC port %d (port + 1000) is out of range; set grpc_port", addrs[i], grpc)
		}
		servers[i] = constant.ServerConfig{
			Scheme:      scheme,
			ContextPath: a.contextPath,
			IpAddr:      a.host,
			Port:        uint64(a.port),
			GrpcPort:    uint64(grpc),
		}
	}
	if s.CAFile != "" {
		// The SDK ignores an unreadable CA file and exits the process on a bad
		// client certificate; check what we hand it.
		if _, err := upstreams.LoadCA(s.CAFile); err != nil {
			return vo.NacosClientParam{}, err
		}
	}
	timeout := time.Duration(s.Timeout)
	if timeout == 0 {
		timeout = defaultTimeout
	}
	dir := filepath.Join(caddy.AppDataDir(), "nacos")
	cc := &constant.ClientConfig{
		TimeoutMs:            uint64(timeout.Milliseconds()),
		NamespaceId:          namespace,
		Username:             s.Username,
		Password:             s.Password,
		AccessKey:            s.AccessKey,
		SecretKey:            s.SecretKey,
		NotLoadCacheAtStart:  true,
		UpdateCacheWhenEmpty: true,
		DisableUseSnapShot:   true,
		CacheDir:             filepath.Join(dir, "cache"),
		LogDir:               filepath.Join(dir, "log"),
		LogLevel:             "warn",
		AppName:              "caddy",
		ContextPath:          parsed[0].contextPath,
		TLSCfg: constant.TLSConfig{
			Appointed: true, // never read TLS settings from nacos_remote_client_rpc_tls_* environment variables
			Enable:    tlsOn,
			TrustAll:  s.InsecureSkipVerify,
			CaFile:    s.CAFile,
		},
	}
	return vo.NacosClientParam{ClientConfig: cc, ServerConfigs: servers}, nil
}

// fingerprint identifies the servers, namespace and identity that p
// connects as, for the server named name in the nacos app ("" for a
// source's own fields), without holding any secret: equal fingerprints
// share one client.
func fingerprint(name string, p vo.NacosClientParam) string {
	cc := p.ClientConfig
	parts := []string{
		name, cc.NamespaceId, cc.Username, cc.Password, cc.AccessKey, cc.SecretKey,
		fmt.Sprint(cc.TimeoutMs), fmt.Sprint(cc.TLSCfg.Enable, cc.TLSCfg.TrustAll), cc.TLSCfg.CaFile,
	}
	for _, sc := range p.ServerConfigs {
		parts = append(parts, fmt.Sprintf("%s|%s|%s|%d|%d", sc.Scheme, sc.IpAddr, sc.ContextPath, sc.Port, sc.GrpcPort))
	}
	return upstreams.Fingerprint(parts...)
}
