package upstreams

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
)

// TLSFiles are the TLS settings of a connection as a config writes them:
// file names and the name to verify. Their errors name the config's
// fields: ca_file, cert_file and key_file.
type TLSFiles struct {
	// CAFile is a PEM file of the CA certificates that the server's
	// certificate must chain to; "": the system trust store.
	CAFile string
	// CertFile and KeyFile are a PEM client certificate and its key; "":
	// none.
	CertFile, KeyFile string
	// ServerName is the name the server's certificate must be valid for;
	// "": the address's host.
	ServerName string
}

// Config reads the files into a client TLS configuration (TLS 1.2 or
// later) that verifies the server's certificate.
func (f TLSFiles) Config() (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: f.ServerName}
	if f.CAFile != "" {
		pool, err := LoadCA(f.CAFile)
		if err != nil {
			return nil, err
		}
		cfg.RootCAs = pool
	}
	if f.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(f.CertFile, f.KeyFile)
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
