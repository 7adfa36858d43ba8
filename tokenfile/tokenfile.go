// Package tokenfile reads a token kept in a file that may be replaced at any
// time (a rotated service account token, a token Vault Agent renders): the
// token_file fields of the k8s and consul sources.
package tokenfile

import (
	"fmt"
	"os"
	"strings"
	"sync"
	"time"
)

// Cache is the last token read from a file, and which version of the file
// it came from. Its zero value is ready to use; it is safe for concurrent
// use.
type Cache struct {
	mu      sync.Mutex
	modTime time.Time
	size    int64
	token   string
}

// Get returns the token in the file at path, read again as soon as the
// file's modification time or size changes. check judges what the file
// holds, trimmed of surrounding white space (empty, more than one line: the
// file is being rewritten, or holds the wrong thing); its error, like a file
// that is missing or cannot be read, keeps the last token in use while
// there is one, and is returned while there is none. Its errors must not
// show the token.
func (c *Cache) Get(path string, check func(path, token string) error) (string, error) {
	st, err := os.Stat(path)
	c.mu.Lock()
	defer c.mu.Unlock()
	if err != nil {
		if c.token != "" {
			return c.token, nil // mid-rotation: keep the last token
		}
		return "", fmt.Errorf("token_file: %w", err)
	}
	if c.token != "" && st.ModTime().Equal(c.modTime) && st.Size() == c.size {
		return c.token, nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		if c.token != "" {
			return c.token, nil
		}
		return "", fmt.Errorf("token_file: %w", err)
	}
	tok := strings.TrimSpace(string(b))
	if err := check(path, tok); err != nil {
		if c.token != "" {
			return c.token, nil // being rewritten
		}
		return "", err
	}
	c.token, c.modTime, c.size = tok, st.ModTime(), st.Size()
	return tok, nil
}

// File is a token kept in the file at Path, as a source's token_file names
// it: read again as soon as the file changes (see Cache.Get), checked by
// the source's own rule. It is safe for concurrent use.
type File struct {
	Path  string
	check func(path, token string) error
	cache Cache
}

// New returns the token file at path, whose content check judges (see
// Cache.Get).
func New(path string, check func(path, token string) error) *File {
	return &File{Path: path, check: check}
}

// Get returns the current token. While the file is missing or being
// rewritten, the last token read stays in use.
func (f *File) Get() (string, error) { return f.cache.Get(f.Path, f.check) }
