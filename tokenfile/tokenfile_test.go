package tokenfile

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func oneLine(path, tok string) error {
	if tok == "" || strings.Contains(tok, "\n") {
		return errors.New(path + " does not hold one token")
	}
	return nil
}

func TestGet(t *testing.T) {
	path := filepath.Join(t.TempDir(), "token")
	at := time.Now()
	write := func(s string) {
		t.Helper()
		at = at.Add(time.Second)
		if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(path, at, at); err != nil {
			t.Fatal(err)
		}
	}
	var c Cache
	if _, err := c.Get(path, oneLine); err == nil || !strings.HasPrefix(err.Error(), "token_file: ") {
		t.Fatalf("missing file before any token: %v", err)
	}
	write("a\nb")
	if _, err := c.Get(path, oneLine); err == nil || !strings.Contains(err.Error(), "does not hold one token") {
		t.Fatalf("check before any token: %v", err)
	}
	write(" first\n")
	if tok, err := c.Get(path, oneLine); err != nil || tok != "first" {
		t.Fatalf("Get = %q, %v", tok, err)
	}
	write("a\nb") // refused by check: the last token stays
	if tok, err := c.Get(path, oneLine); err != nil || tok != "first" {
		t.Fatalf("refused content: Get = %q, %v; want the last token", tok, err)
	}
	write("second")
	if tok, _ := c.Get(path, oneLine); tok != "second" {
		t.Fatalf("after rotation Get = %q, want second", tok)
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if tok, err := c.Get(path, oneLine); err != nil || tok != "second" {
		t.Fatalf("removed file: Get = %q, %v; want the last token", tok, err)
	}
}
