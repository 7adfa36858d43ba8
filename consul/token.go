package consul

import (
	"context"
	"fmt"
	"net/http"
	"strings"

	"github.com/caddy-discovery/caddy-discovery/tokenfile"
)

// newTokenFile returns an ACL token kept in a file that may be replaced at
// any time (Vault Agent renders rotated tokens into one). It is read again
// as soon as the file's modification time or size changes, checked before
// every request to Consul (there are few: one long-poll per service, never
// one per proxied request) and by the client's token check. While the file
// is missing or empty (being rewritten), the last token read stays in use.
func newTokenFile(path string) *tokenfile.File { return tokenfile.New(path, validToken) }

// validToken refuses a file that does not hold one token's secret ID.
func validToken(path, tok string) error {
	switch {
	case tok == "":
		return fmt.Errorf("token_file: %s is empty; write the token's secret ID into it", path)
	case strings.ContainsAny(tok, "\r\n"):
		// never shown: it would be the secret
		return fmt.Errorf("token_file: %s holds more than one line; write only the token's secret ID into it", path)
	}
	return nil
}

// tokenFileError is a token file that cannot be read, as a request's
// failure.
type tokenFileError struct{ err error }

func (e *tokenFileError) Error() string { return e.err.Error() }
func (e *tokenFileError) Unwrap() error { return e.err }

// scope is what one request asks in the name of: the namespace and
// partition of its query. The transport sets them, so that nothing else
// does (see transport).
type scope struct{ namespace, partition string }

type scopeKey struct{}

func withScope(ctx context.Context, s scope) context.Context {
	return context.WithValue(ctx, scopeKey{}, s)
}

// transport makes every request say exactly what the config says. The
// consul/api client fills in what a config leaves empty from the process's
// CONSUL_HTTP_TOKEN, CONSUL_NAMESPACE and CONSUL_PARTITION environment
// variables (api.NewClient bootstraps from api.DefaultConfig); a Caddy config
// writes those as placeholders if it wants them. So the transport sets the
// token header (from token or token_file, or none) and the ns and partition
// query parameters (from the request's scope, or none) itself.
type transport struct {
	next  http.RoundTripper
	token string          // a static token, or ""
	file  *tokenfile.File // or nil
}

func (t *transport) RoundTrip(req *http.Request) (*http.Response, error) {
	tok := t.token
	if t.file != nil {
		var err error
		if tok, err = t.file.Get(); err != nil {
			if req.Body != nil {
				req.Body.Close()
			}
			return nil, &tokenFileError{err}
		}
	}
	sc, _ := req.Context().Value(scopeKey{}).(scope)
	if tok == "" && sc == (scope{}) && !fromEnvironment(req) {
		// Nothing to set or take away: no copy, which a blocking query
		// would keep for the minutes it waits (about 1 KB per service).
		return t.next.RoundTrip(req)
	}
	req = req.Clone(req.Context())
	req.Header.Del("X-Consul-Token")
	req.Header.Del("Authorization")
	if tok != "" {
		req.Header.Set("X-Consul-Token", tok)
	}
	q := req.URL.Query()
	q.Del("ns")
	q.Del("namespace")
	q.Del("partition")
	q.Del("ap")
	if sc.namespace != "" {
		q.Set("ns", sc.namespace)
	}
	if sc.partition != "" {
		q.Set("partition", sc.partition)
	}
	req.URL.RawQuery = q.Encode()
	return t.next.RoundTrip(req)
}

// fromEnvironment reports whether consul/api put a token, a namespace or a
// partition into req: from the environment variables (see transport).
func fromEnvironment(req *http.Request) bool {
	if len(req.Header.Values("X-Consul-Token")) > 0 || len(req.Header.Values("Authorization")) > 0 {
		return true
	}
	q := req.URL.Query()
	return q.Has("ns") || q.Has("namespace") || q.Has("partition") || q.Has("ap")
}
