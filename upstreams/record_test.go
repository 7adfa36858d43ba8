package upstreams

import (
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestTake(t *testing.T) {
	var s Skipped
	var out []Target
	for i, rec := range []Record{
		{Host: "10.0.0.2", Port: 80, Weight: 3},
		{Host: "[fd00::1]", Port: 80},
		{Host: "Web-1.Internal.", Port: 8080},                                  // a name, lowercased, without the final dot
		{Host: "10.0.0.1", Port: 80, Metadata: map[string]string{"zone": "b"}}, // not selected
		{Host: "0.0.0.0", Port: 80},
		{Host: "fe80::1%eth0", Port: 80},
		{Host: "web 1", Port: 80},
		{Host: "10.0.0", Port: 80}, // a mangled IPv4 address is no name
		{Host: "10.0.0.3", Port: 0},
		{Host: "10.0.0.3", Port: 70000},
	} {
		want := map[string]string{}
		if i == 3 {
			want = map[string]string{"zone": "a"}
		}
		out = s.Take(out, "key \"k\"", rec, want)
	}
	snap := NewSnapshot(out, nil)
	if got, want := snap.Dials(), []string{"10.0.0.2:80", "[fd00::1]:80", "web-1.internal:8080"}; !slices.Equal(got, want) {
		t.Errorf("dials %v, want %v", got, want)
	}
	if w := snap.Weight("10.0.0.2:80"); w != 3 {
		t.Errorf("weight %v, want 3", w)
	}
	if w := snap.Weight("web-1.internal:8080"); w != 1 {
		t.Errorf("weight of a record without one %v, want 1", w)
	}
	if k := s.Kind(); k != KindNoBackends {
		t.Errorf("kind %v with selected records, want no_backends", k)
	}
	var none Skipped
	for _, host := range []string{"10.0.0.1", "0.0.0.0"} {
		none.Take(nil, "key", Record{Host: host, Port: 80}, map[string]string{"expose": "true"})
	}
	if k := none.Kind(); k != KindNotSelected {
		t.Errorf("kind %v when no record has the metadata, want not_selected", k)
	}
	marked := none
	marked.Take(nil, "key", Record{Host: "0.0.0.0", Port: 80, Metadata: map[string]string{"expose": "true"}}, map[string]string{"expose": "true"})
	if k := marked.Kind(); k != KindNoBackends {
		t.Errorf("kind %v when an unusable record has the metadata, want no_backends", k)
	}
	msg := s.String()
	for _, want := range []string{"6 without an IP address or host name Caddy can dial", "1 not matching the metadata", `(such as key "k": "0.0.0.0" is not an address the gateway can dial`} {
		if !strings.Contains(msg, want) {
			t.Errorf("skipped %q, want it to contain %q", msg, want)
		}
	}
}

func TestIsHostName(t *testing.T) {
	for s, want := range map[string]bool{
		"web":                           true,
		"web-1.shop.svc":                true,
		"_http._tcp.example":            true,
		"example.com.":                  true,
		"":                              false,
		".":                             false,
		"-web":                          false,
		"web-":                          false,
		"a..b":                          false,
		"web/1":                         false,
		"web:80":                        false,
		"10.0.0.1":                      false,
		"1.2.3.4.5":                     false,
		strings.Repeat("a", 64):         false,
		strings.Repeat("a.", 127) + "a": false, // 255 characters
		"héllo":                         false,
		"1abc.2com":                     true,
	} {
		if got := IsHostName(s); got != want {
			t.Errorf("IsHostName(%q) = %v, want %v", s, got, want)
		}
	}
}

func TestParsePortAndWeight(t *testing.T) {
	for s, want := range map[string]int{"80": 80, "65535": 65535, "0": 0, "65536": 0, "-1": 0, "8o": 0, "": 0} {
		p, err := ParsePort(s)
		if p != want || (err == nil) != (want != 0) {
			t.Errorf("ParsePort(%q) = %d, %v", s, p, err)
		}
	}
	for s, want := range map[string]float64{"2": 2, "0.5": 0.5, "0": 0, "-3": 0, "NaN": 0, "Inf": 0, "1e400": 0, "x": 0} {
		if got := ParseWeight(s); got != want {
			t.Errorf("ParseWeight(%q) = %v, want %v", s, got, want)
		}
	}
}

func TestClip(t *testing.T) {
	if got := Clip("short"); got != "short" {
		t.Errorf("Clip(short) = %q", got)
	}
	long := strings.Repeat("é", 40) // 80 bytes
	got := Clip(long)
	if !utf8.ValidString(got) || !strings.HasSuffix(got, "…") || len(got) > 60+len("…") {
		t.Errorf("Clip(long) = %q", got)
	}
}

func FuzzTake(f *testing.F) {
	f.Add("10.0.0.1", 80)
	f.Add("web-1.internal", 8080)
	f.Add("[::ffff:10.0.0.1]", 1)
	f.Fuzz(func(t *testing.T, host string, port int) {
		var s Skipped
		out := s.Take(nil, "k", Record{Host: host, Port: port}, nil)
		for _, tg := range out {
			if tg.Port == 0 || (tg.Host == "") == !tg.Addr.IsValid() {
				t.Fatalf("target %+v of %q", tg, host)
			}
			if tg.Host != "" && (!IsHostName(tg.Host) || strings.ContainsAny(tg.Host, ":/ ")) {
				t.Fatalf("host %q of %q", tg.Host, host)
			}
		}
	})
}
