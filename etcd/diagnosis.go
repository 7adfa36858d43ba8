package etcd

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/caddy-discovery/caddy-discovery/upstreams"
)

// The diagnosis of a connection or a read that fails: each says what to
// fix, carries its kind for the metrics, and never holds the password nor
// anything that changes from one retry to the next, so that a problem that
// persists is logged once.

// explain turns a failure to connect, log in or get an answer into the
// connection's problem.
func (c *client) explain(err error) error {
	switch {
	case errors.Is(err, rpctypes.ErrAuthFailed):
		return upstreams.Problem(upstreams.KindUnauthorized, fmt.Errorf("%s: the user name or password is wrong (authentication failed); check username and password (serving the last known instances meanwhile)", c.st.where))
	case errors.Is(err, rpctypes.ErrAuthNotEnabled):
		return upstreams.Problem(upstreams.KindMisconfigured, fmt.Errorf("%s: authentication is not enabled on the cluster; remove username and password, or enable it (etcdctl auth enable)", c.st.where))
	case errors.Is(err, rpctypes.ErrUserEmpty), errors.Is(err, rpctypes.ErrInvalidAuthToken):
		return upstreams.Problem(upstreams.KindUnauthorized, fmt.Errorf("%s: the cluster requires authentication; set username and password (serving the last known instances meanwhile)", c.st.where))
	}
	if fix, ok := upstreams.TLSFailure(err, "etcd", "--client-cert-auth"); ok {
		return upstreams.Problem(upstreams.KindUnreachable, fmt.Errorf("cannot reach %s: %s (serving the last known instances meanwhile)", c.st.where, fix))
	}
	cause, fix := "no answer", "check endpoints, and that etcd runs and listens there for clients"
	msg := err.Error()
	switch {
	case strings.Contains(msg, "first record does not look like a TLS handshake"):
		cause, fix = "it speaks plain HTTP/2", "write the endpoints as host:port or http:// and remove tls, ca_file, cert_file, key_file and tls_server_name"
	case strings.Contains(msg, "connection refused"):
		cause = "connection refused"
	case errors.Is(err, context.DeadlineExceeded) || status.Code(err) == codes.DeadlineExceeded:
		cause, fix = "no answer in time", "check that etcd is not hung and that its members are reachable"
	case status.Code(err) == codes.Unavailable:
		cause = "unavailable"
	}
	return upstreams.Problem(upstreams.KindUnreachable, fmt.Errorf("cannot reach %s: %s: %s (serving the last known instances meanwhile)", c.st.where, cause, fix))
}

// explainRead turns a failed read or watch of prefix into the watch's
// problem, or, for a failure to reach etcd or log in, the connection's
// (conn).
func (c *client) explainRead(prefix string, err error) (_ error, conn bool) {
	switch {
	case errors.Is(err, rpctypes.ErrPermissionDenied):
		user := c.st.username
		return upstreams.Problem(upstreams.KindForbidden, fmt.Errorf("%s: user %q may not read the keys under %q (permission denied); grant a role of the user read access: etcdctl role grant-permission <role> read %q --prefix=true",
			c.st.where, user, prefix, prefix)), false
	case errors.Is(err, rpctypes.ErrNoLeader):
		return upstreams.Problem(upstreams.KindUnreachable, fmt.Errorf("%s: the member has no leader; the cluster has lost its quorum (serving the last known instances meanwhile)", c.st.where)), false
	case errors.Is(err, rpctypes.ErrAuthFailed), errors.Is(err, rpctypes.ErrUserEmpty), errors.Is(err, rpctypes.ErrInvalidAuthToken):
		return c.explain(err), true
	}
	if code := status.Code(err); code == codes.Unavailable || code == codes.DeadlineExceeded || errors.Is(err, context.DeadlineExceeded) {
		return c.explain(err), true
	}
	return fmt.Errorf("%s: reading the keys under %q: %w", c.st.where, prefix, err), false
}

// diagnoseTLS finds out why a TLS connection fails, when it does: the
// etcd client only says that no answer came in time. It makes a TLS
// connection of its own to each endpoint, as the client would, and reads a
// moment, for a member that rejects the client certificate after the
// handshake (TLS 1.3). It returns the first failure, or nil.
func (c *client) diagnoseTLS(ctx context.Context) error {
	if c.st.tls == nil {
		return nil
	}
	for _, host := range c.st.hosts {
		cfg := c.st.tls.Clone()
		if cfg.ServerName == "" {
			cfg.ServerName, _, _ = net.SplitHostPort(host)
		}
		cfg.NextProtos = []string{"h2"}
		d := tls.Dialer{NetDialer: &net.Dialer{Timeout: probeTimeout}, Config: cfg}
		conn, err := d.DialContext(ctx, "tcp", host)
		if err != nil {
			if errors.As(err, new(*net.OpError)) && !strings.Contains(err.Error(), "tls") && !strings.Contains(err.Error(), "x509") {
				continue // not TLS's doing
			}
			return err
		}
		_ = conn.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		_, err = conn.Read(make([]byte, 1))
		conn.Close()
		if err != nil && (strings.Contains(err.Error(), "certificate") || strings.Contains(err.Error(), "alert")) {
			return err
		}
	}
	return nil
}
