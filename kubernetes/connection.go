package kubernetes

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/caddy-discovery/caddy-discovery/redact"
	"github.com/caddy-discovery/caddy-discovery/upstreams"
)

// Connection says how to reach and authenticate to one Kubernetes API server.
//
// With no field set, Caddy uses the in-cluster service account when it runs in
// a Pod, and otherwise kubectl's loading rules: the files in $KUBECONFIG, then
// ~/.kube/config. Set either `kubeconfig` (and optionally `context`), or
// `api_server` with `token`, `token_file` or neither (anonymous).
//
// Every field accepts placeholders such as {env.KUBE_TOKEN}.
type Connection struct {
	// Path to a kubeconfig file. Its current context is used unless
	// `context` names another one.
	Kubeconfig string `json:"kubeconfig,omitempty"`

	// The kubeconfig context to use. Default: the file's current context.
	Context string `json:"context,omitempty"`

	// URL of the API server, e.g. https://10.0.0.1:6443. Used with
	// `token` or `token_file`, and `ca_file` unless the server's certificate
	// is signed by a CA in the system trust store.
	APIServer string `json:"api_server,omitempty"`

	// The former name of `api_server`, still read: `server` names a
	// connection in the other sources. Caddy logs a warning asking for
	// `api_server` instead.
	Server string `json:"server,omitempty"`

	// A bearer token for `api_server`. Prefer `token_file` or a placeholder such
	// as {env.KUBE_TOKEN} over writing the token into the config. The token
	// is never logged.
	Token string `json:"token,omitempty"`

	// A file holding a bearer token for `api_server`, such as a projected
	// service account token. It is read again as soon as it changes, so
	// rotated tokens are used without a reload.
	TokenFile string `json:"token_file,omitempty"`

	// PEM file with the CA certificate(s) that signed the API server's
	// certificate. Default: the system trust store.
	CAFile string `json:"ca_file,omitempty"`

	// Skips verification of the API server's TLS certificate. Insecure:
	// anyone on the path can then read the token and forge responses. Only
	// for tests.
	InsecureSkipVerify bool `json:"insecure_skip_verify,omitempty"`
}

// IsSet reports whether any connection field is set, i.e. whether a source
// brings a connection of its own.
func (c Connection) IsSet() bool { return c != Connection{} }

// Validate checks that the fields fit together; field names in the errors are
// those of the config.
func (c Connection) Validate() error {
	server, field := c.apiServer()
	switch {
	case c.Server != "" && c.APIServer != "":
		return errors.New("server and api_server are both set; server is the former name of api_server: keep only api_server")
	case c.Token != "" && c.TokenFile != "":
		return errors.New("token and token_file are both set; set only one")
	case server == "" && (c.Token != "" || c.TokenFile != "" || c.CAFile != "" || c.InsecureSkipVerify):
		return errors.New("token, token_file, ca_file and insecure_skip_verify go with server or api_server; set api_server to the API server's URL")
	case server != "" && (c.Kubeconfig != "" || c.Context != ""):
		return fmt.Errorf("%s is set together with kubeconfig/context; use one way to connect", field)
	}
	if server != "" && !strings.Contains(server, "{") { // placeholders are checked once replaced
		// url.Parse's error would repeat the URL, credentials included
		shown := redact.Address(server)
		u, err := url.Parse(server)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return fmt.Errorf("%s %q is not a URL such as https://10.0.0.1:6443", field, shown)
		}
		if u.User != nil {
			return fmt.Errorf("%s %q: credentials are not allowed in the URL; use token or token_file", field, shown)
		}
	}
	return nil
}

// apiServer is the API server's URL, and the field that gives it:
// api_server, or server, its former name.
func (c Connection) apiServer() (url, field string) {
	if c.Server != "" && c.APIServer == "" {
		return c.Server, "server"
	}
	return c.APIServer, "api_server"
}

// warnFormerNames logs a warning for each field set under its former name;
// where says where it is set (`cluster "east"`, `service shop/web`).
func (c Connection) warnFormerNames(log *zap.Logger, where string) {
	if c.Server != "" {
		log.Warn("k8s: the connection field server is now api_server; the old name still works, but write api_server (server names a connection in the other sources)",
			zap.String("in", where))
	}
}

// Expand replaces placeholders such as {env.X} in every field.
func (c Connection) Expand(repl *caddy.Replacer) (Connection, error) {
	err := upstreams.ExpandFields(repl, upstreams.Field{Name: "kubeconfig", Value: &c.Kubeconfig}, upstreams.Field{Name: "context", Value: &c.Context},
		upstreams.Field{Name: "api_server", Value: &c.APIServer}, upstreams.Field{Name: "server", Value: &c.Server},
		upstreams.Field{Name: "token", Value: &c.Token, Secret: true},
		upstreams.Field{Name: "token_file", Value: &c.TokenFile}, upstreams.Field{Name: "ca_file", Value: &c.CAFile})
	return c, err
}

// restConfig builds the client configuration of the cluster named cluster
// and its fingerprint. It reads files (kubeconfig, in-cluster CA) but makes
// no request.
func (c Connection) restConfig(cluster string) (*rest.Config, string, error) {
	cfg, err := c.baseConfig()
	if err != nil {
		return nil, "", err
	}
	fp := fingerprint(cluster, cfg)
	if path := cfg.BearerTokenFile; path != "" {
		// Read the token again whenever the file changes (see newTokenFile).
		cfg.BearerTokenFile, cfg.BearerToken = "", ""
		file := newTokenFile(path)
		cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper { return &tokenFileTransport{file: file, next: rt} })
	}
	return cfg, fp, nil
}

func (c Connection) baseConfig() (*rest.Config, error) {
	var (
		cfg *rest.Config
		err error
	)
	switch server, _ := c.apiServer(); {
	case server != "":
		cfg = &rest.Config{
			Host:            server,
			BearerToken:     c.Token,
			BearerTokenFile: c.TokenFile,
			TLSClientConfig: rest.TLSClientConfig{CAFile: c.CAFile, Insecure: c.InsecureSkipVerify},
		}
		if c.TokenFile != "" {
			if _, err := os.Stat(c.TokenFile); err != nil {
				return nil, fmt.Errorf("token_file: %w", err)
			}
		}
		if c.CAFile != "" {
			if _, err := os.Stat(c.CAFile); err != nil {
				return nil, fmt.Errorf("ca_file: %w", err)
			}
		}
	case c.inCluster():
		cfg, err = rest.InClusterConfig()
		if err != nil {
			return nil, fmt.Errorf("in-cluster config: %w", err)
		}
	default:
		rules := clientcmd.NewDefaultClientConfigLoadingRules()
		if c.Kubeconfig != "" {
			rules.ExplicitPath = c.Kubeconfig
		}
		overrides := &clientcmd.ConfigOverrides{CurrentContext: c.Context}
		cfg, err = clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, overrides).ClientConfig()
		if err != nil {
			if clientcmd.IsEmptyConfig(err) {
				return nil, errors.New("no Kubernetes connection configured: not running in a Pod, no kubeconfig at $KUBECONFIG or ~/.kube/config; set kubeconfig, or api_server and token_file")
			}
			return nil, fmt.Errorf("kubeconfig: %w", err)
		}
	}
	cfg.UserAgent = "caddy-discovery"
	cfg.QPS, cfg.Burst = 20, 40
	return cfg, nil
}

// inCluster reports whether the connection is the Pod's service account:
// neither server nor kubeconfig nor context set, and running in a Pod
// (KUBERNETES_SERVICE_HOST is set).
func (c Connection) inCluster() bool {
	server, _ := c.apiServer()
	return server == "" && c.Kubeconfig == "" && c.Context == "" && os.Getenv("KUBERNETES_SERVICE_HOST") != ""
}

// serviceAccountNamespace is the file that holds the namespace of the Pod's
// service account.
const serviceAccountNamespace = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"

// namespace is the namespace of a Service reference that names none, chosen
// as kubectl chooses it: in a Pod, $POD_NAMESPACE or else the service
// account's namespace, read from saFile (serviceAccountNamespace but in
// tests); with a kubeconfig, its context's namespace or else "default"; with
// api_server, "default".
func (c Connection) namespace(saFile string) (string, error) {
	switch server, _ := c.apiServer(); {
	case server != "":
		return metav1.NamespaceDefault, nil
	case c.inCluster():
		if ns := os.Getenv("POD_NAMESPACE"); ns != "" {
			return ns, nil
		}
		b, err := os.ReadFile(saFile)
		if err != nil {
			return "", fmt.Errorf("reading the service account's namespace: %w", err)
		}
		ns := strings.TrimSpace(string(b))
		if ns == "" {
			return "", fmt.Errorf("the service account's namespace file %s is empty", saFile)
		}
		return ns, nil
	}
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	if c.Kubeconfig != "" {
		rules.ExplicitPath = c.Kubeconfig
	}
	overrides := &clientcmd.ConfigOverrides{CurrentContext: c.Context}
	ns, _, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, overrides).Namespace()
	if err != nil {
		return "", fmt.Errorf("kubeconfig: %w", err)
	}
	return ns, nil
}

// fingerprint identifies the cluster named cluster, the API server and the
// identity that cfg connects as (see upstreams.Fingerprint): sources with
// equal fingerprints share informers, which are named after their own
// cluster.
//
// With a token file, the file's path is the identity, not the token it held
// when the config was loaded (in-cluster and kubeconfig tokenFile configs have
// both): otherwise every reload after a rotation of a projected token would
// open a second set of watches.
func fingerprint(cluster string, cfg *rest.Config) string {
	token := cfg.BearerToken
	if cfg.BearerTokenFile != "" {
		token = ""
	}
	exec := ""
	if cfg.ExecProvider != nil {
		exec = fmt.Sprintf("%s %v %v", cfg.ExecProvider.Command, cfg.ExecProvider.Args, cfg.ExecProvider.Env)
	}
	return upstreams.Fingerprint(cluster,
		cfg.Host, cfg.APIPath, token, cfg.BearerTokenFile, cfg.Username, cfg.Password,
		cfg.CAFile, string(cfg.CAData), cfg.CertFile, string(cfg.CertData), cfg.KeyFile, string(cfg.KeyData),
		cfg.ServerName, fmt.Sprint(cfg.Insecure), cfg.Impersonate.UserName, exec)
}
