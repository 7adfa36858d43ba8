package upstreams

import "testing"

func TestParseAddr(t *testing.T) {
	for in, want := range map[string]string{
		"10.0.0.1": "10.0.0.1", "fd00::1": "fd00::1", "::ffff:10.0.0.2": "10.0.0.2", "127.0.0.1": "127.0.0.1",
		"0.0.0.0": "", "::": "", "::ffff:0.0.0.0": "", "fe80::1%eth0": "", "fe80::1%a]b": "", "::ffff:10.0.0.3%eth0": "",
		"": "", "10.0.0.256": "", "[fd00::1]": "", "10.0.0.1:80": "", " 10.0.0.1": "", "web.example.com": "",
	} {
		addr, ok := ParseAddr(in)
		if got := addr.String(); !ok && want != "" || ok && got != want {
			t.Errorf("ParseAddr(%q) = %v, %v; want %q", in, addr, ok, want)
		}
	}
}
