package caddyfile

import (
	"errors"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
)

// conf is a block's fields, read with the helpers under test.
type conf struct {
	Name    string         `json:"name,omitempty"`
	Addrs   []string       `json:"addrs,omitempty"`
	On      bool           `json:"on,omitempty"`
	Timeout caddy.Duration `json:"timeout,omitempty"`
	Port    int            `json:"port,omitempty"`
}

func (c conf) Validate() error {
	if c.Port < 0 {
		return errors.New("port: negative")
	}
	return nil
}

func (c *conf) options() Options {
	return Options{"name": String(&c.Name), "addrs": Strings(&c.Addrs), "on": Flag(&c.On), "timeout": Duration(&c.Timeout), "port": Int(&c.Port)}
}

type app struct {
	Things map[string]*conf `json:"things,omitempty"`
}

func parse(input string, existing any) (any, error) {
	a := new(app)
	d := caddyfile.NewTestDispenser(input)
	return NamedBlocks(d, existing, "test", a, &a.Things, "thing", "thing one { ... }", (*conf).options)
}

func TestNamedBlocksAndOptions(t *testing.T) {
	v, err := parse(`test {
		thing one {
			name    first
			addrs   a b
			on
			timeout 1m30s
			port    8080
		}
	}`, nil)
	if err != nil {
		t.Fatal(err)
	}
	got := string(v.(httpcaddyfile.App).Value)
	want := `{"things":{"one":{"name":"first","addrs":["a","b"],"on":true,"timeout":90000000000,"port":8080}}}` // 1m30s in ns
	if got != want {
		t.Fatalf("got %s\nwant %s", got, want)
	}

	// The option again: its blocks join the earlier ones.
	v, err = parse(`test {
		thing two {
			on
		}
	}`, v)
	if err != nil {
		t.Fatal(err)
	}
	if got := string(v.(httpcaddyfile.App).Value); !strings.Contains(got, `"one":`) || !strings.Contains(got, `"two":{"on":true}`) {
		t.Fatalf("merged option = %s", got)
	}
	if _, err := parse(`test {
		thing one
	}`, v); err == nil || !strings.Contains(err.Error(), `thing "one" has already been specified`) {
		t.Fatalf("a name given twice: %v", err)
	}
}

func TestOptionErrors(t *testing.T) {
	for input, want := range map[string]string{
		"test {\n thing\n}":                                   "thing needs a name",
		"test {\n other x\n}":                                 "unrecognized test global option 'other'",
		"test {\n thing a {\n name x\n name y\n }\n}":         "name has already been specified",
		"test {\n thing a {\n on\n on\n }\n}":                 "on has already been specified",
		"test {\n thing a {\n on yes\n }\n}":                  "wrong argument count",
		"test {\n thing a {\n name\n }\n}":                    "wrong argument count",
		"test {\n thing a {\n timeout soon\n }\n}":            `timeout: "soon" is not a duration`,
		"test {\n thing a {\n timeout 1s\n timeout 2s\n }\n}": "timeout has already been specified",
		"test {\n thing a {\n port eighty\n }\n}":             `port takes a whole number, not "eighty"`,
		"test {\n thing a {\n addrs\n }\n}":                   "wrong argument count",
		"test {\n thing a {\n bogus 1\n }\n}":                 "unrecognized test thing option 'bogus' (known options: [addrs name on port timeout])",
		"test {\n thing a {\n port -1\n }\n}":                 `thing "a": port: negative`,
		"test {\n thing a.b {\n }\n}":                         `invalid thing name "a.b"`,
	} {
		if _, err := parse(input, nil); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: error = %v, want it to contain %q", input, err, want)
		}
	}
}

func TestSecret(t *testing.T) {
	read := func(input string) (string, error) {
		d := caddyfile.NewTestDispenser(input)
		var dst string
		for d.Next() {
			if err := Secret(&dst).Read(d); err != nil {
				return dst, err
			}
		}
		return dst, nil
	}
	if got, err := read(`password "my s3cret"`); err != nil || got != "my s3cret" {
		t.Fatalf("quoted secret: %q, %v", got, err)
	}
	for input, want := range map[string]string{
		"password":                    "password takes one argument, not 0",
		"password my s3cret":          "password takes one argument, not 2; quote a value with spaces",
		"password s3cret\npassword x": "password has already been specified",
	} {
		_, err := read(input)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: error = %v, want it to contain %q", input, err, want)
		}
		if err != nil && strings.Contains(err.Error(), "s3cret") {
			t.Errorf("%q: error shows the secret: %v", input, err)
		}
	}
}

func TestMap(t *testing.T) {
	read := func(input string) (map[string]string, error) {
		d := caddyfile.NewTestDispenser(input)
		var m map[string]string
		for d.Next() {
			if err := Map(&m, "metadata zone east").Read(d); err != nil {
				return m, err
			}
		}
		return m, nil
	}
	if m, err := read("metadata zone east\nmetadata version v2"); err != nil || len(m) != 2 || m["zone"] != "east" || m["version"] != "v2" {
		t.Fatalf("read = %v, %v", m, err)
	}
	for input, want := range map[string]string{
		"metadata zone":                       "metadata takes a key and a value, e.g. metadata zone east",
		"metadata zone east west":             "metadata takes a key and a value",
		"metadata zone east\nmetadata zone x": `metadata "zone" has already been specified`,
	} {
		if _, err := read(input); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: error = %v, want it to contain %q", input, err, want)
		}
	}
}
