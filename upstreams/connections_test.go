package upstreams

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

// conn is a connection config of some app.
type conn struct{ Addr string }

func (c conn) Validate() error {
	if c.Addr == "bad" {
		return errors.New("addr: bad")
	}
	return nil
}

func TestCheckNamed(t *testing.T) {
	if err := CheckNamed("server", "empty server", map[string]*conn{"a": {}, "b_2": {Addr: "x"}}); err != nil {
		t.Fatal(err)
	}
	for want, named := range map[string]map[string]*conn{
		`servers: invalid server name "a b"`: {"a b": {}},
		"servers: a: empty server":           {"a": nil, "b": {Addr: "bad"}}, // in name order
		"servers: b: addr: bad":              {"a": {}, "b": {Addr: "bad"}},
	} {
		if err := CheckNamed("server", "empty server", named); err == nil || !strings.HasPrefix(err.Error(), want) {
			t.Errorf("%v: error = %v, want %q", named, err, want)
		}
	}
}

func TestPick(t *testing.T) {
	named := map[string]*conn{"default": {Addr: "d"}, "dc2": {Addr: "2"}, "gone": nil}
	inline := conn{Addr: "inline"}
	for _, tc := range []struct {
		name      string
		named     map[string]*conn
		inlineSet bool
		want      string
		wantConn  conn
		wantOK    bool
	}{
		{"dc2", named, true, "dc2", conn{Addr: "2"}, true},   // a name wins over inline fields
		{"", named, true, "", inline, true},                  // inline fields win over "default"
		{"", named, false, "default", conn{Addr: "d"}, true}, // else "default"
		{"", nil, false, "", conn{}, true},                   // else the built-in default
		{"dc3", named, false, "dc3", conn{}, false},
		{"gone", named, false, "gone", conn{}, false}, // a null entry is not a connection
	} {
		name, c, ok := Pick(tc.named, tc.name, inline, tc.inlineSet)
		if name != tc.want || c != tc.wantConn || ok != tc.wantOK {
			t.Errorf("Pick(%q, inlineSet %v) = %q, %v, %v; want %q, %v, %v", tc.name, tc.inlineSet, name, c, ok, tc.want, tc.wantConn, tc.wantOK)
		}
	}
	if got := Defined(named); !slices.Equal(got, []string{"dc2", "default", "gone"}) {
		t.Errorf("Defined = %v", got)
	}
}

func TestStarts(t *testing.T) {
	var s Starts
	var got []int
	s.Add(func() { got = append(got, 1) }, func() { got = append(got, 2) })
	s.Add(func() { got = append(got, 3) })
	s.Start()
	if !slices.Equal(got, []int{1, 2, 3}) {
		t.Fatalf("started %v, want 1 2 3 in order", got)
	}
}
