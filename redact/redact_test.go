package redact

import "testing"

func TestAddress(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"10.0.0.1:8848", "10.0.0.1:8848"},
		{"https://nacos.internal/nacos", "https://nacos.internal/nacos"},
		{"http://nacos:s3cret@127.0.0.1:8848/nacos", "http://REDACTED@127.0.0.1:8848/nacos"},
		{"http://token@10.0.0.1:6443", "http://REDACTED@10.0.0.1:6443"},
		{"nacos:s3cret@127.0.0.1:8848", "REDACTED@127.0.0.1:8848"},
		{"https://u:pa/ss@host:1", "https://REDACTED@host:1"},
		{"https://u:p@ss#x@host", "https://REDACTED@host"},
		{"https://u:p?q@host", "https://REDACTED@host"},
		{"@host", "REDACTED@host"},
		{"", ""},
	} {
		if got := Address(tc.in); got != tc.want {
			t.Errorf("Address(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
