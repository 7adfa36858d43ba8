package upstreams

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"
)

// ClientTLS is how a connection speaks TLS to its registry, as a config
// writes it: embed it in a connection's settings for the fields tls,
// ca_file, cert_file, key_file and tls_server_name. Errors name those
// fields.
type ClientTLS struct {
	// Connects with TLS to addresses written as host:port. Implied by an
	// https:// address and by `ca_file`, `cert_file`, `key_file` and
	// `tls_server_name`. The servers' certificates are always verified.
	// Default: false
	TLS bool `json:"tls,omitempty"`

	// A PEM file with the CA certificate(s) that the servers' certificates
	// must chain to, instead of the system trust store.
	CAFile string `json:"ca_file,omitempty"`

	// A PEM client certificate, for servers that verify clients. Goes with
	// `key_file`.
	CertFile string `json:"cert_file,omitempty"`

	// The PEM private key of `cert_file`.
	KeyFile string `json:"key_file,omitempty"`

	// The name the servers' certificates must be valid for, when it is not
	// the host of the address (e.g. when addresses are IPs). Default: the
	// address's host.
	TLSServerName string `json:"tls_server_name,omitempty"`
}

// Wanted reports whether a field asks for TLS.
func (t ClientTLS) Wanted() bool { return t != ClientTLS{} }

// Validate checks that the fields fit together; values with placeholders
// are checked once replaced. It reads no file.
func (t ClientTLS) Validate() error {
	if (t.CertFile == "") != (t.KeyFile == "") {
		return errors.New("cert_file and key_file go together; set both or neither")
	}
	if n := t.TLSServerName; n != "" && !strings.Contains(n, "{") && (strings.ContainsAny(n, " /:@") || strings.Trim(n, ".") == "") {
		return fmt.Errorf("tls_server_name: %q is not a host name such as server.example.internal", n)
	}
	return nil
}

// Fields are the string fields, for ExpandFields.
func (t *ClientTLS) Fields() []Field {
	return []Field{{Name: "ca_file", Value: &t.CAFile}, {Name: "cert_file", Value: &t.CertFile}, {Name: "key_file", Value: &t.KeyFile}, {Name: "tls_server_name", Value: &t.TLSServerName}}
}

// Key identifies the settings (file names and server name) for a
// connection's fingerprint.
func (t ClientTLS) Key() string {
	return strings.Join([]string{t.CAFile, t.CertFile, t.KeyFile, t.TLSServerName}, "\x00")
}

// Config reads the files into a client TLS configuration (TLS 1.2 or
// later) that verifies the servers' certificates.
func (t ClientTLS) Config() (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: t.TLSServerName}
	if t.CAFile != "" {
		pool, err := LoadCA(t.CAFile)
		if err != nil {
			return nil, err
		}
		cfg.RootCAs = pool
	}
	if t.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("cert_file and key_file: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

// LoadCA reads the CA certificates of a ca_file.
func LoadCA(file string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("ca_file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("ca_file: %s holds no PEM certificate", file)
	}
	return pool, nil
}

// TLSFailure says what is wrong when err is a TLS failure between Caddy and
// a registry, and which field fixes it: an untrusted, invalid or misnamed
// server certificate, or a client certificate refused or missing. ok is
// false for any other error. registry names the server's kind ("Consul"),
// and clientAuth the server setting that makes it verify clients (such as
// "verify_incoming"), for the message.
func TLSFailure(err error, registry, clientAuth string) (fix string, ok bool) {
	var (
		unknownCA x509.UnknownAuthorityError
		hostname  x509.HostnameError
		invalid   x509.CertificateInvalidError
	)
	msg := err.Error()
	switch {
	case errors.As(err, &unknownCA) || strings.Contains(msg, "certificate signed by unknown authority"):
		return fmt.Sprintf("its certificate is not signed by a CA Caddy trusts: set ca_file to the %s CA's certificate", registry), true
	case errors.As(err, &hostname) || strings.Contains(msg, "certificate is valid for"):
		return "its certificate is not valid for the address's host: set tls_server_name to a name it is valid for", true
	case errors.As(err, &invalid):
		return fmt.Sprintf("its certificate is invalid (expired, or not for a server): check the %s servers' certificates", registry), true
	case strings.Contains(msg, "certificate required") || strings.Contains(msg, "bad certificate") || strings.Contains(msg, "unknown certificate"):
		return fmt.Sprintf("it refused Caddy's client certificate, or wants one (%s): set cert_file and key_file to a certificate signed by a CA it trusts", clientAuth), true
	}
	return "", false
}
