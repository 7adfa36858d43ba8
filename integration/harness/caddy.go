package harness

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	_ "github.com/caddyserver/caddy/v2/modules/standard" // the modules a stock caddy has

	_ "github.com/caddy-discovery/caddy-discovery" // the modules under test
	"github.com/caddy-discovery/caddy-discovery/upstreams/upstreamstest"
)

// Caddy is the process's Caddy instance, configured by the test. Caddy is a
// process-wide singleton: tests using it must not run in parallel.
type Caddy struct {
	t       testing.TB
	Port    int    // the HTTP port sites listen on
	LogFile string // where Caddy logs, if not stderr
	// Errors is the handler of the server's errors routes (handle_errors),
	// if any, in JSON.
	Errors string
	client *http.Client
}

// StartCaddy loads a config with one HTTP server on 127.0.0.1:port whose only
// route is the given reverse_proxy handler (JSON), and stops Caddy when the
// test ends.
func StartCaddy(t testing.TB, port int, handlerJSON string, extraApps string) *Caddy {
	t.Helper()
	return StartCaddyLogged(t, port, handlerJSON, extraApps, "")
}

// StartCaddyLogged is StartCaddy with Caddy's logs written to logFile.
func StartCaddyLogged(t testing.TB, port int, handlerJSON, extraApps, logFile string) *Caddy {
	t.Helper()
	return StartCaddyWith(t, &Caddy{Port: port, LogFile: logFile}, handlerJSON, extraApps)
}

// StartCaddyWith starts Caddy as c says (its Port, and LogFile and Errors
// if set) with the handler and the apps.
func StartCaddyWith(t testing.TB, c *Caddy, handlerJSON, extraApps string) *Caddy {
	t.Helper()
	c.t, c.client = t, &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	c.Load(handlerJSON, extraApps)
	t.Cleanup(c.Stop)
	return c
}

// Stop stops Caddy, cleaning up its config; it is safe to call twice.
func (c *Caddy) Stop() {
	if err := caddy.Stop(); err != nil {
		c.t.Errorf("stopping caddy: %v", err)
	}
}

// Load (re)loads Caddy with the handler: on a running Caddy this is a config
// reload, with the new config provisioned before the old one is cleaned up.
func (c *Caddy) Load(handlerJSON string, extraApps string) {
	c.t.Helper()
	if extraApps != "" {
		extraApps = "," + extraApps
	}
	errorRoutes := ""
	if c.Errors != "" {
		errorRoutes = fmt.Sprintf(`, "errors": {"routes": [{"handle": [%s]}]}`, c.Errors)
	}
	writer := ""
	if c.LogFile != "" {
		writer = fmt.Sprintf(`, "writer": {"output": "file", "filename": %q}`, c.LogFile)
	}
	cfg := fmt.Sprintf(`{
		"admin": {"disabled": true},
		"logging": {"logs": {"default": {"level": "INFO"%s}}},
		"apps": {
			"http": {"servers": {"test": {
				"listen": ["127.0.0.1:%d"],
				"automatic_https": {"disable": true},
				"routes": [{"handle": [%s]}]%s
			}}}%s
		}
	}`, writer, c.Port, handlerJSON, errorRoutes, extraApps)
	if err := caddy.Load([]byte(cfg), true); err != nil {
		c.t.Fatalf("loading caddy config: %v\n%s", err, cfg)
	}
}

// Get sends one request through Caddy and returns the answering backend's
// name, or the status and body when it is not 200.
func (c *Caddy) Get(host string) (string, error) {
	req, err := http.NewRequestWithContext(context.Background(), http.MethodGet, fmt.Sprintf("http://127.0.0.1:%d/", c.Port), nil)
	if err != nil {
		return "", err
	}
	if host != "" {
		req.Host = host
	}
	resp, err := c.client.Do(req)
	if dropped(err) {
		// A connection that ends without an answer is Caddy's own graceful
		// shutdown of the old server across a reload (the fault tests
		// count them), never an upstream source's doing: a source answers
		// 502 or 503. Retried once, as clients retry such a request.
		resp, err = c.client.Do(req)
	}
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("status %d: %s", resp.StatusCode, strings.TrimSpace(string(body)))
	}
	return string(body), nil
}

// dropped reports a request whose connection ended without an answer.
func dropped(err error) bool {
	return err != nil && (errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET))
}

// Spread sends n requests and counts the answers per backend name; errors are
// counted under "error: ...".
func (c *Caddy) Spread(n int) map[string]int {
	got := make(map[string]int)
	for range n {
		name, err := c.Get("")
		if err != nil {
			name = "error: " + err.Error()
		}
		got[name]++
	}
	return got
}

// Names is the sorted set of keys of a Spread result.
func Names(spread map[string]int) []string {
	var names []string
	for k := range spread {
		names = append(names, k)
	}
	slices.Sort(names)
	return names
}

// Eventually polls check until it returns nil or timeout passes, then fails
// the test with the last error.
func Eventually(t testing.TB, timeout time.Duration, check func() error) {
	t.Helper()
	upstreamstest.Eventually(t, timeout, check)
}

// ExpectBackends polls until a spread of requests reaches exactly the named
// backends (all of them, and nothing else).
func (c *Caddy) ExpectBackends(t testing.TB, timeout time.Duration, want ...string) {
	t.Helper()
	slices.Sort(want)
	Eventually(t, timeout, func() error {
		got := c.Spread(6 * max(len(want), 1))
		if names := Names(got); !slices.Equal(names, want) {
			return fmt.Errorf("requests reached %v, want exactly %v", got, want)
		}
		return nil
	})
}

// ReadFile returns a file's contents, or "" if it cannot be read.
func ReadFile(name string) string {
	b, _ := os.ReadFile(name)
	return string(b)
}
