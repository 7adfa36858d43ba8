package kubernetes

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestTokenFileFollowsRotation(t *testing.T) {
	path := filepath.Join(t.TempDir(), "token")
	write := func(s string, mod time.Time) {
		if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(path, mod, mod); err != nil {
			t.Fatal(err)
		}
	}
	f := newTokenFile(path)
	if _, err := f.Get(); err == nil {
		t.Fatal("missing file must be an error before any token was read")
	}
	now := time.Now()
	write("first\n", now)
	if tok, err := f.Get(); err != nil || tok != "first" {
		t.Fatalf("get = %q, %v", tok, err)
	}
	write("second", now.Add(time.Second))
	if tok, _ := f.Get(); tok != "second" {
		t.Fatalf("after rotation get = %q, want second", tok)
	}
	write("", now.Add(2*time.Second)) // being rewritten
	if tok, _ := f.Get(); tok != "second" {
		t.Fatalf("empty file mid-rotation: get = %q, want the last token", tok)
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if tok, _ := f.Get(); tok != "second" {
		t.Fatalf("removed file mid-rotation: get = %q, want the last token", tok)
	}
}
