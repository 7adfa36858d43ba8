package kubernetes

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

const twoContexts = `apiVersion: v1
kind: Config
clusters:
- name: a
  cluster: {server: "https://10.0.0.1:6443"}
- name: b
  cluster: {server: "https://10.0.0.2:6443"}
users:
- name: u
  user: {token: "kubeconfig-secret"}
contexts:
- name: ctx-a
  context: {cluster: a, user: u}
- name: ctx-b
  context: {cluster: b, user: u}
current-context: ctx-a
`

func TestConnectionSources(t *testing.T) {
	dir := t.TempDir()
	kubeconfig := filepath.Join(dir, "config")
	if err := os.WriteFile(kubeconfig, []byte(twoContexts), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("KUBERNETES_SERVICE_HOST", "") // not in a Pod
	t.Setenv("HOME", dir)                   // no ~/.kube/config

	// Nothing configured: kubectl's rules, here $KUBECONFIG.
	t.Setenv("KUBECONFIG", kubeconfig)
	cfg, _, err := Connection{}.restConfig("")
	if err != nil || cfg.Host != "https://10.0.0.1:6443" || cfg.BearerToken != "kubeconfig-secret" {
		t.Fatalf("from $KUBECONFIG: %+v, %v", cfg, err)
	}
	// An explicit file and context.
	cfg, _, err = Connection{Kubeconfig: kubeconfig, Context: "ctx-b"}.restConfig("")
	if err != nil || cfg.Host != "https://10.0.0.2:6443" {
		t.Fatalf("kubeconfig with context ctx-b: %+v, %v", cfg, err)
	}
	if _, _, err := (Connection{Kubeconfig: kubeconfig, Context: "nope"}).restConfig(""); err == nil || !strings.Contains(err.Error(), "nope") ||
		strings.Contains(err.Error(), "kubeconfig-secret") {
		t.Fatalf("unknown context: %v (must name it, and show no token)", err)
	}
	// Nothing at all.
	t.Setenv("KUBECONFIG", "")
	if _, _, err := (Connection{}).restConfig(""); err == nil || !strings.Contains(err.Error(), "no Kubernetes connection configured") {
		t.Fatalf("no connection anywhere: %v", err)
	}
	// Explicit server: TLS verified unless asked otherwise; token_file read
	// by our transport, not client-go's once-a-minute cache.
	tokenFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokenFile, []byte("t"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, _, err = Connection{Server: "https://10.0.0.3:6443", TokenFile: tokenFile}.restConfig("")
	if err != nil || cfg.Insecure || cfg.BearerTokenFile != "" || cfg.WrapTransport == nil {
		t.Fatalf("server with token_file: %+v, %v", cfg, err)
	}
	if _, _, err := (Connection{Server: "https://10.0.0.3:6443", TokenFile: filepath.Join(dir, "missing")}).restConfig(""); err == nil || !strings.Contains(err.Error(), "token_file") {
		t.Fatalf("missing token_file: %v", err)
	}
}

// A kubeconfig (or in-cluster config) with a token file shares its watches
// across a token rotation: the fingerprint follows the file, not its content.
func TestFingerprintFollowsTokenFileNotToken(t *testing.T) {
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "token")
	kubeconfig := filepath.Join(dir, "config")
	if err := os.WriteFile(kubeconfig, []byte(`apiVersion: v1
kind: Config
clusters: [{name: a, cluster: {server: "https://10.0.0.1:6443"}}]
users: [{name: u, user: {tokenFile: "`+tokenFile+`"}}]
contexts: [{name: a, context: {cluster: a, user: u}}]
current-context: a
`), 0o600); err != nil {
		t.Fatal(err)
	}
	fp := func(token string) string {
		t.Helper()
		if err := os.WriteFile(tokenFile, []byte(token), 0o600); err != nil {
			t.Fatal(err)
		}
		_, fp, err := Connection{Kubeconfig: kubeconfig}.restConfig("")
		if err != nil {
			t.Fatal(err)
		}
		return fp
	}
	if before, after := fp("token-1"), fp("token-2"); before != after {
		t.Fatal("a rotated token in the same token file must keep the fingerprint (and the shared watches)")
	}
	if fp1, fp2 := (Connection{Server: "https://10.0.0.1:6443", Token: "a"}), (Connection{Server: "https://10.0.0.1:6443", Token: "b"}); func() bool {
		_, a, _ := fp1.restConfig("")
		_, b, _ := fp2.restConfig("")
		return a == b
	}() {
		t.Fatal("different inline tokens are different identities")
	}
}

// TestServerErrorsHideCredentials: a server URL written with credentials in
// it is refused, and the error shows it without them.
func TestServerErrorsHideCredentials(t *testing.T) {
	for server, want := range map[string]string{
		"https://admin:s3cretPassw0rd@10.0.0.1:6443": `server "https://REDACTED@10.0.0.1:6443": credentials are not allowed in the URL; use token or token_file`,
		"https://s3cretToken@10.0.0.1:6443":          `server "https://REDACTED@10.0.0.1:6443": credentials are not allowed`,
		"https://admin:s3cret%zz@10.0.0.1:6443":      `server "https://REDACTED@10.0.0.1:6443" is not a URL`,
		"admin:s3cretPassw0rd@10.0.0.1:6443":         `server "REDACTED@10.0.0.1:6443" is not a URL`,
	} {
		err := Connection{Server: server}.Validate()
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: error = %v, want it to contain %q", server, err, want)
		}
		if err != nil && strings.Contains(err.Error(), "s3cret") {
			t.Errorf("the error shows the secret: %v", err)
		}
	}
}

// TestConnectionNamespace: a reference without a namespace uses the
// connection's, chosen as kubectl chooses it.
func TestConnectionNamespace(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("HOME", dir) // no ~/.kube/config
	t.Setenv("KUBECONFIG", "")
	t.Setenv("POD_NAMESPACE", "")
	nsFile := filepath.Join(dir, "namespace")
	kubeconfig := filepath.Join(dir, "config")
	withNamespace := strings.Replace(twoContexts, "contexts:\n", "contexts:\n- name: ctx-shop\n  context: {cluster: a, user: u, namespace: shop}\n", 1)
	if err := os.WriteFile(kubeconfig, []byte(withNamespace), 0o600); err != nil {
		t.Fatal(err)
	}
	check := func(what string, c Connection, want, wantErr string) {
		t.Helper()
		got, err := c.namespace(nsFile)
		switch {
		case wantErr != "" && (err == nil || !strings.Contains(err.Error(), wantErr)):
			t.Errorf("%s: namespace() = %q, %v; want an error containing %q", what, got, err, wantErr)
		case wantErr == "" && (err != nil || got != want):
			t.Errorf("%s: namespace() = %q, %v; want %q", what, got, err, want)
		}
	}

	t.Setenv("KUBERNETES_SERVICE_HOST", "") // not in a Pod
	check("server", Connection{Server: "https://10.0.0.1:6443"}, "default", "")
	check("kubeconfig context with a namespace", Connection{Kubeconfig: kubeconfig, Context: "ctx-shop"}, "shop", "")
	check("kubeconfig context without one", Connection{Kubeconfig: kubeconfig}, "default", "")
	check("unknown context", Connection{Kubeconfig: kubeconfig, Context: "nope"}, "", "nope")

	t.Setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1") // in a Pod
	check("in a Pod without the namespace file", Connection{}, "", "reading the service account's namespace")
	if err := os.WriteFile(nsFile, []byte(""), 0o600); err != nil {
		t.Fatal(err)
	}
	check("in a Pod with an empty namespace file", Connection{}, "", "is empty")
	if err := os.WriteFile(nsFile, []byte("team-a\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	check("in a Pod", Connection{}, "team-a", "")
	t.Setenv("POD_NAMESPACE", "team-b")
	check("in a Pod with $POD_NAMESPACE", Connection{}, "team-b", "")
	check("in a Pod, with a kubeconfig", Connection{Kubeconfig: kubeconfig, Context: "ctx-shop"}, "shop", "")
	check("in a Pod, with a server", Connection{Server: "https://10.0.0.1:6443"}, "default", "")
}

// TestAPIServerFormerName: `server`, the former name of `api_server`, still
// connects to the same API server (with a warning naming the new field); the
// two together are refused; errors name the field as written.
func TestAPIServerFormerName(t *testing.T) {
	old, now := Connection{Server: "https://10.0.0.1:6443", Token: "t"}, Connection{APIServer: "https://10.0.0.1:6443", Token: "t"}
	for _, c := range []Connection{old, now} {
		if err := c.Validate(); err != nil {
			t.Fatalf("%+v: %v", c, err)
		}
		cfg, _, err := c.restConfig("default")
		if err != nil || cfg.Host != "https://10.0.0.1:6443" {
			t.Fatalf("%+v: host %v, %v", c, cfg, err)
		}
	}
	_, fpOld, _ := old.restConfig("default")
	_, fpNow, _ := now.restConfig("default")
	if fpOld != fpNow {
		t.Error("the former name must share the watches of the new one")
	}
	if err := (Connection{Server: "https://a:1", APIServer: "https://a:1"}).Validate(); err == nil || !strings.Contains(err.Error(), "keep only api_server") {
		t.Errorf("both names: %v", err)
	}
	for c, want := range map[Connection]string{
		{Server: "10.0.0.1:6443"}:    `server "10.0.0.1:6443" is not a URL`,
		{APIServer: "10.0.0.1:6443"}: `api_server "10.0.0.1:6443" is not a URL`,
	} {
		if err := c.Validate(); err == nil || !strings.HasPrefix(err.Error(), want) {
			t.Errorf("%+v: %v, want %q", c, err, want)
		}
	}
	core, logs := observer.New(zapcore.WarnLevel)
	old.warnFormerNames(zap.New(core), `cluster "east"`)
	now.warnFormerNames(zap.New(core), `cluster "west"`)
	if got := logs.All(); len(got) != 1 || !strings.Contains(got[0].Message, "write api_server") {
		t.Errorf("warnings: %v", got)
	}
}
