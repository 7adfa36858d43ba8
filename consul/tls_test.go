package consul

import (
	"crypto/tls"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/caddy-discovery/caddy-discovery/upstreams"
	"github.com/caddy-discovery/caddy-discovery/upstreams/upstreamstest"
)

// TestTLS: the server's certificate is verified (against ca_file, for the
// address's host or tls_server_name), and each way TLS can fail says which
// field to fix.
func TestTLS(t *testing.T) {
	f := newFakeConsul(t)
	f.set("web", entry("web", "10.0.0.1", 80, api.HealthPassing))
	secure := httptest.NewUnstartedServer(f.srv.Config.Handler)
	secure.StartTLS()
	t.Cleanup(secure.Close)
	mtls := httptest.NewUnstartedServer(f.srv.Config.Handler)
	mtls.TLS = &tls.Config{ClientAuth: tls.RequireAnyClientCert}
	mtls.StartTLS()
	t.Cleanup(mtls.Close)

	dir := t.TempDir()
	ca := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: secure.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	mtlsCA := filepath.Join(dir, "mtls-ca.pem")
	if err := os.WriteFile(mtlsCA, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: mtls.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	hostport := func(s *httptest.Server) string { return strings.TrimPrefix(s.URL, "https://") }

	for name, tc := range map[string]struct {
		srv  Server
		want string // "" : serves
	}{
		"verified":            {srv: Server{Addresses: []string{secure.URL}, ClientTLS: upstreams.ClientTLS{CAFile: ca}}},
		"tls flag":            {srv: Server{Addresses: []string{hostport(secure)}, ClientTLS: upstreams.ClientTLS{TLS: true, CAFile: ca}}},
		"server name":         {srv: Server{Addresses: []string{secure.URL}, ClientTLS: upstreams.ClientTLS{CAFile: ca, TLSServerName: "example.com"}}},
		"unknown CA":          {srv: Server{Addresses: []string{secure.URL}}, want: "its certificate is not signed by a CA Caddy trusts: set ca_file"},
		"wrong name":          {srv: Server{Addresses: []string{secure.URL}, ClientTLS: upstreams.ClientTLS{CAFile: ca, TLSServerName: "consul.internal"}}, want: "set tls_server_name to a name it is valid for"},
		"plain server":        {srv: Server{Addresses: []string{f.addr()}, ClientTLS: upstreams.ClientTLS{TLS: true}}, want: "it speaks plain HTTP: write http:// addresses"},
		"TLS server as plain": {srv: Server{Addresses: []string{hostport(secure)}}, want: "it speaks HTTPS: write https:// addresses, or set tls"},
		"client certificate":  {srv: Server{Addresses: []string{mtls.URL}, ClientTLS: upstreams.ClientTLS{CAFile: mtlsCA}}, want: "set cert_file and key_file"},
	} {
		t.Run(name, func(t *testing.T) {
			app := new(App)
			u := testSource(t, app, &ConsulUpstreams{Service: "web", Server: tc.srv})
			_ = app.Start()
			if tc.want == "" {
				upstreamstest.Eventually(t, 5*time.Second, upstreamstest.ExpectDials(u, "10.0.0.1:80"))
				return
			}
			expectErr(t, u, "cannot reach consul at ", tc.want, "(serving the last known instances meanwhile)")
		})
	}
}

// TestBadAnswers: an address that is not Consul's API is said to be so.
func TestBadAnswers(t *testing.T) {
	for name, tc := range map[string]struct {
		handler http.HandlerFunc
		want    string
	}{
		"404":      {func(w http.ResponseWriter, r *http.Request) { http.NotFound(w, r) }, "answered 404 Not Found to /v1/health/service/web: is this Consul's HTTP API? check addresses"},
		"not JSON": {func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("<html>")) }, "is this Consul's HTTP API? check addresses"},
		"429":      {func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(429) }, "Consul's rate limit refused the query"},
	} {
		t.Run(name, func(t *testing.T) {
			srv := httptest.NewServer(tc.handler)
			t.Cleanup(srv.Close)
			app := new(App)
			u := testSource(t, app, &ConsulUpstreams{Service: "web", Server: Server{Addresses: []string{srv.URL}}})
			_ = app.Start()
			expectErr(t, u, tc.want)
		})
	}
}

// TestFailover: after a connection error the next address is tried.
func TestFailover(t *testing.T) {
	f := newFakeConsul(t)
	f.set("web", entry("web", "10.0.0.1", 80, api.HealthPassing))
	dead := httptest.NewServer(http.NotFoundHandler())
	deadAddr := strings.TrimPrefix(dead.URL, "http://")
	dead.Close()
	app := new(App)
	u := testSource(t, app, &ConsulUpstreams{Service: "web", Server: Server{Addresses: []string{deadAddr, f.addr()}}})
	_ = app.Start()
	upstreamstest.Eventually(t, 5*time.Second, upstreamstest.ExpectDials(u, "10.0.0.1:80"))
	if err := u.Snapshot().Err(); err != nil {
		t.Errorf("after failing over: %v", err)
	}
}
