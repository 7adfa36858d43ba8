package harness

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

var (
	buildOnce sync.Once
	builtBin  string
	buildErr  error
)

// BuildCaddy builds the caddy command of integration/cmd/caddy (Caddy with
// the standard modules and this module's) from the working tree, once per
// test binary, and returns its path.
func BuildCaddy(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "caddy-discovery-bin-")
		if err != nil {
			buildErr = err
			return
		}
		builtBin = filepath.Join(dir, "caddy")
		cmd := exec.Command("go", "build", "-o", builtBin, "./integration/cmd/caddy")
		cmd.Dir = filepath.Join(ScriptDir(), "..")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build ./integration/cmd/caddy: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return builtBin
}

// Output collects everything a process writes to stdout and stderr.
type Output struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (o *Output) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.buf.Write(p)
}

// String is everything written so far.
func (o *Output) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.buf.String()
}

// Process is a caddy process run by a test, with its admin API on
// 127.0.0.1 and its config and data directories in the test's temp dir.
type Process struct {
	Admin  string // the admin API's base URL
	Output *Output
	cmd    *exec.Cmd
	done   chan struct{}
	client *http.Client
}

// StartProcess runs `caddy run --config config` with the given environment
// (added to the test's) and waits until its admin API answers. config must
// set the admin listener to adminAddr. The process is stopped when the test
// ends.
func StartProcess(t testing.TB, bin, config, adminAddr string, env ...string) *Process {
	t.Helper()
	return StartProcessWrapped(t, nil, bin, config, adminAddr, env...)
}

// StartProcessWrapped is StartProcess with the caddy command line appended
// to wrapper, a command that sets something up and then executes its
// arguments, such as `unshare --mount sh -c '...; exec "$@"' sh`. The
// wrapper must exec caddy rather than run it as a child, so that the
// process Stop and Kill act on is caddy.
func StartProcessWrapped(t testing.TB, wrapper []string, bin, config, adminAddr string, env ...string) *Process {
	t.Helper()
	home := t.TempDir()
	p := &Process{
		Admin:  "http://" + adminAddr,
		Output: new(Output),
		done:   make(chan struct{}),
		client: &http.Client{Timeout: 30 * time.Second},
	}
	args := append(slices.Clone(wrapper), bin, "run", "--config", config)
	p.cmd = exec.Command(args[0], args[1:]...)
	p.cmd.Dir = home
	p.cmd.Env = append(os.Environ(), "HOME="+home, "XDG_CONFIG_HOME="+filepath.Join(home, "config"), "XDG_DATA_HOME="+filepath.Join(home, "data"))
	p.cmd.Env = append(p.cmd.Env, env...)
	p.cmd.Stdout, p.cmd.Stderr = p.Output, p.Output
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		_ = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(p.Kill)
	// Caddy starts the admin API first, then the config's apps; GET
	// /config/ answers null until the config runs.
	if !WaitFor(30*time.Second, func() bool {
		code, body, err := p.Request(http.MethodGet, "/config/", "")
		return err == nil && code == http.StatusOK && strings.TrimSpace(body) != "null"
	}) {
		t.Fatalf("caddy's admin API at %s did not come up with the config running; output:\n%s", adminAddr, p.Output)
	}
	return p
}

// Request sends a request to the admin API and returns the status and body.
func (p *Process) Request(method, path, body string, header ...string) (int, string, error) {
	req, err := http.NewRequestWithContext(context.Background(), method, p.Admin+path, strings.NewReader(body))
	if err != nil {
		return 0, "", err
	}
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := p.client.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// Stop asks caddy to stop through the admin API and waits for it to exit.
func (p *Process) Stop(t testing.TB) {
	t.Helper()
	if _, _, err := p.Request(http.MethodPost, "/stop", ""); err != nil {
		t.Errorf("stopping caddy: %v", err)
	}
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		t.Errorf("caddy did not exit within 30s of /stop")
		p.Kill()
	}
}

// Pid is the caddy process's ID.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Kill ends the process if it still runs.
func (p *Process) Kill() {
	select {
	case <-p.done:
	default:
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}
