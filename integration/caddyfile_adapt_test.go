package integration

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddytest"
	_ "github.com/caddyserver/caddy/v2/modules/standard"

	_ "github.com/caddy-discovery/caddy-discovery"
)

var update = flag.Bool("update", false, "rewrite the JSON of the caddyfile_adapt/*.caddytest golden files with the adapter's output")

// separator divides a golden file into the Caddyfile and what adapting it
// gives: the JSON that `caddy adapt --pretty` prints, or a line
// "error: <text>" whose text the adapt error must contain.
const separator = "----------"

// TestCaddyfileAdapt adapts every caddyfile_adapt/*.caddytest Caddyfile and
// compares the result with the file's expectation. With -update, it rewrites
// the expected JSON (never an expected error) from the adapter's output.
func TestCaddyfileAdapt(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("caddyfile_adapt", "*.caddytest"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no caddyfile_adapt/*.caddytest files found")
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			text := strings.ReplaceAll(string(data), "\r\n", "\n")
			caddyfile, expected, ok := strings.Cut(text, "\n"+separator+"\n")
			if !ok {
				t.Fatalf("%s has no line %q between the Caddyfile and the expected result", file, separator)
			}
			caddyfile = strings.TrimSpace(caddyfile) + "\n"
			expected = strings.TrimSpace(expected)

			if wantErr, isErr := strings.CutPrefix(expected, "error:"); isErr {
				checkAdaptError(t, caddyfile, strings.TrimSpace(wantErr))
				return
			}
			if *update {
				writeGolden(t, file, caddyfile)
				return
			}
			if !caddytest.CompareAdapt(t, file, caddyfile, "caddyfile", expected) {
				t.Errorf("adapting %s does not give the expected JSON (diff above; -update rewrites it)", file)
			}
		})
	}
}

func checkAdaptError(t *testing.T, caddyfile, want string) {
	t.Helper()
	if want == "" {
		t.Fatal("the line 'error:' must be followed by text that the adapt error contains")
	}
	_, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(caddyfile), nil)
	if err == nil {
		t.Fatalf("adapting succeeded; want an error containing %q", want)
	}
	if !strings.Contains(err.Error(), want) {
		t.Fatalf("adapt error:\n%v\nwant it to contain:\n%s", err, want)
	}
}

// writeGolden rewrites file with the adapter's output, indented as by
// `caddy adapt --pretty`.
func writeGolden(t *testing.T, file, caddyfile string) {
	t.Helper()
	result, warnings, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(caddyfile), nil)
	if err != nil {
		t.Fatalf("adapting: %v", err)
	}
	for _, w := range warnings {
		t.Logf("warning: %s:%d: %s: %s", file, w.Line, w.Directive, w.Message)
	}
	var pretty bytes.Buffer
	if err := json.Indent(&pretty, result, "", "\t"); err != nil {
		t.Fatal(err)
	}
	out := caddyfile + separator + "\n" + pretty.String() + "\n"
	if err := os.WriteFile(file, []byte(out), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("updated %s", file)
}
