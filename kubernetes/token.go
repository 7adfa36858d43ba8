package kubernetes

import (
	"fmt"
	"net/http"

	utilnet "k8s.io/apimachinery/pkg/util/net"

	"github.com/caddy-discovery/caddy-discovery/tokenfile"
)

// tokenFile is a bearer token kept in a file that may be replaced at any time
// (projected service account tokens rotate). client-go's own file source
// re-reads only once a minute; this one re-reads the file as soon as its
// modification time or size changes, checked on every API request (there are
// few: lists and long-lived watches, never one per proxied request).
type tokenFile struct {
	path  string
	cache tokenfile.Cache
}

func (f *tokenFile) get() (string, error) { return f.cache.Get(f.path, validToken) }

// validToken refuses an empty file.
func validToken(path, tok string) error {
	if tok == "" {
		return fmt.Errorf("token_file %s is empty", path)
	}
	return nil
}

// tokenFileTransport sets the Authorization header from a tokenFile.
type tokenFileTransport struct {
	file *tokenFile
	next http.RoundTripper
}

func (t *tokenFileTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	tok, err := t.file.get()
	if err != nil {
		return nil, err
	}
	req = utilnet.CloneRequest(req)
	req.Header.Set("Authorization", "Bearer "+tok)
	return t.next.RoundTrip(req)
}

// WrappedRoundTripper lets client-go see through the wrapper.
func (t *tokenFileTransport) WrappedRoundTripper() http.RoundTripper { return t.next }
