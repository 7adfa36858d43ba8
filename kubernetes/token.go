package kubernetes

import (
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	utilnet "k8s.io/apimachinery/pkg/util/net"
)

// tokenFile is a bearer token kept in a file that may be replaced at any time
// (projected service account tokens rotate). client-go's own file source
// re-reads only once a minute; this one re-reads the file as soon as its
// modification time or size changes, checked on every API request (there are
// few: lists and long-lived watches, never one per proxied request).
type tokenFile struct {
	path string

	mu      sync.Mutex
	modTime time.Time
	size    int64
	token   string
}

func (f *tokenFile) get() (string, error) {
	st, err := os.Stat(f.path)
	f.mu.Lock()
	defer f.mu.Unlock()
	if err != nil {
		if f.token != "" {
			return f.token, nil // mid-rotation: keep the last token
		}
		return "", fmt.Errorf("token_file: %w", err)
	}
	if f.token != "" && st.ModTime().Equal(f.modTime) && st.Size() == f.size {
		return f.token, nil
	}
	b, err := os.ReadFile(f.path)
	if err != nil {
		if f.token != "" {
			return f.token, nil
		}
		return "", fmt.Errorf("token_file: %w", err)
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		if f.token != "" {
			return f.token, nil // being rewritten
		}
		return "", fmt.Errorf("token_file %s is empty", f.path)
	}
	f.token, f.modTime, f.size = tok, st.ModTime(), st.Size()
	return tok, nil
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
