package kubernetes

import (
	"fmt"
	"net/http"

	utilnet "k8s.io/apimachinery/pkg/util/net"

	"github.com/caddy-discovery/caddy-discovery/tokenfile"
)

// newTokenFile returns a bearer token kept in a file that may be replaced at
// any time (projected service account tokens rotate). client-go's own file
// source re-reads only once a minute; this one re-reads the file as soon as
// its modification time or size changes, checked on every API request
// (there are few: lists and long-lived watches, never one per proxied
// request).
func newTokenFile(path string) *tokenfile.File { return tokenfile.New(path, validToken) }

// validToken refuses an empty file.
func validToken(path, tok string) error {
	if tok == "" {
		return fmt.Errorf("token_file %s is empty", path)
	}
	return nil
}

// tokenFileTransport sets the Authorization header from a token file.
type tokenFileTransport struct {
	file *tokenfile.File
	next http.RoundTripper
}

func (t *tokenFileTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	tok, err := t.file.Get()
	if err != nil {
		return nil, err
	}
	req = utilnet.CloneRequest(req)
	req.Header.Set("Authorization", "Bearer "+tok)
	return t.next.RoundTrip(req)
}

// WrappedRoundTripper lets client-go see through the wrapper.
func (t *tokenFileTransport) WrappedRoundTripper() http.RoundTripper { return t.next }
