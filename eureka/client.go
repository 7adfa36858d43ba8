package eureka

import (
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-discovery/caddy-discovery/redact"
)

// DefaultTimeout bounds one request to one server when Config.Timeout is 0.
const DefaultTimeout = 10 * time.Second

// Config configures a Client.
type Config struct {
	// Servers are the base URLs of the Eureka API, such as
	// http://eureka:8761/eureka (Spring Cloud), http://eureka:8080/eureka/v2
	// (Netflix) or http://polaris:8761/eureka; the client appends /apps.
	// They are tried in order: a failing server's request goes to the next,
	// and the client stays with the one that answers. They must not hold
	// credentials: set Username and Password instead.
	Servers []string
	// Username and Password are sent with HTTP basic authentication when
	// either is set. They never appear in errors or logs.
	Username string
	Password string
	// Timeout bounds each request to one server, reading the answer
	// included. Default: 10s.
	Timeout time.Duration
	// Transport sends the requests. Default: a clone of
	// http.DefaultTransport, owned by the client.
	Transport http.RoundTripper
	// Logger receives the client's log lines. Default: none.
	Logger *zap.Logger
}

// Client reads one Eureka server set. It is safe for concurrent use.
type Client struct {
	servers  []*url.URL // no userinfo, query or fragment; path without trailing '/'
	username string
	password string
	auth     bool
	timeout  time.Duration
	http     *http.Client
	owned    *http.Transport // closed by CloseIdleConnections; nil for Config.Transport
	logger   *zap.Logger
	current  atomic.Int32 // index of the server that answered last
}

// NewClient checks cfg and returns a client; it does no I/O.
func NewClient(cfg Config) (*Client, error) {
	if len(cfg.Servers) == 0 {
		return nil, errors.New("eureka: no servers: set at least one server URL, such as http://eureka:8761/eureka")
	}
	if strings.Contains(cfg.Username, ":") {
		return nil, errors.New("eureka: the username holds ':', which HTTP basic authentication cannot send; use a user without one")
	}
	c := &Client{
		username: cfg.Username,
		password: cfg.Password,
		auth:     cfg.Username != "" || cfg.Password != "",
		timeout:  cfg.Timeout,
		logger:   cfg.Logger,
	}
	if c.timeout <= 0 {
		c.timeout = DefaultTimeout
	}
	if c.logger == nil {
		c.logger = zap.NewNop()
	}
	for _, s := range cfg.Servers {
		u, err := parseServer(s)
		if err != nil {
			return nil, err
		}
		c.servers = append(c.servers, u)
	}
	rt := cfg.Transport
	if rt == nil {
		c.owned = http.DefaultTransport.(*http.Transport).Clone()
		rt = c.owned
	}
	c.http = &http.Client{Transport: rt}
	return c, nil
}

func parseServer(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil {
		// url.Error repeats the URL, which may hold a password.
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err
		}
		return nil, fmt.Errorf("eureka: server %q is not a URL (%v); write it as http://host:port/path", redact.Address(s), err)
	}
	if u.User != nil {
		return nil, fmt.Errorf("eureka: server %s holds credentials; set username and password separately instead", redact.Address(s))
	}
	if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("eureka: server %q is not an http or https URL with a host; write it as http://host:port/path", s)
	}
	if u.RawQuery != "" || u.Fragment != "" || u.ForceQuery {
		return nil, fmt.Errorf("eureka: server %q has a query or fragment; give only scheme, host, port and path", s)
	}
	u.Path = strings.TrimRight(u.Path, "/")
	u.RawPath = strings.TrimRight(u.RawPath, "/")
	return u, nil
}

// Apps fetches the whole registry: GET {server}/apps.
func (c *Client) Apps(ctx context.Context) (*Applications, error) {
	return c.get(ctx, "/apps")
}

// Delta fetches the registry's recent changes: GET {server}/apps/delta. Its
// instances carry their action, for Applications.Apply, and its HashCode is
// the server's hash code of the whole registry.
func (c *Client) Delta(ctx context.Context) (*Applications, error) {
	return c.get(ctx, "/apps/delta")
}

// CloseIdleConnections closes the client's idle connections to the servers,
// so that no goroutine of its transport outlives its use. It does nothing for
// a Config.Transport, which the caller owns.
func (c *Client) CloseIdleConnections() {
	if c.owned != nil {
		c.owned.CloseIdleConnections()
	}
}

// get asks the servers in turn, from the one that answered last, until one
// answers with a Eureka registry.
func (c *Client) get(ctx context.Context, path string) (*Applications, error) {
	n := len(c.servers)
	start := int(c.current.Load())
	var errs []error
	for i := range n {
		idx := (start + i) % n
		apps, err := c.getFrom(ctx, c.servers[idx], path)
		if err == nil {
			if idx != start && c.current.CompareAndSwap(int32(start), int32(idx)) {
				c.logger.Info("switched eureka server",
					zap.String("from", c.servers[start].String()),
					zap.String("to", c.servers[idx].String()))
			}
			return apps, nil
		}
		if ctx.Err() != nil {
			return nil, err
		}
		errs = append(errs, err)
		if n > 1 {
			c.logger.Debug("eureka server failed", zap.String("server", c.servers[idx].String()), zap.Error(err))
		}
	}
	if n == 1 {
		return nil, errs[0]
	}
	// One line, unlike errors.Join, with each error still wrapped.
	format := "all %d eureka servers failed: " + strings.TrimSuffix(strings.Repeat("%w; ", n), "; ")
	args := []any{n}
	for _, err := range errs {
		args = append(args, err)
	}
	return nil, fmt.Errorf(format, args...)
}

func (c *Client) getFrom(ctx context.Context, server *url.URL, path string) (*Applications, error) {
	u := *server
	u.Path += path
	if u.RawPath != "" {
		u.RawPath += path
	}
	where := u.String()
	reqCtx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(reqCtx, http.MethodGet, where, nil)
	if err != nil {
		return nil, fmt.Errorf("fetching %s: %w", where, err)
	}
	req.Header.Set("Accept", "application/json")
	if c.auth {
		req.SetBasicAuth(c.username, c.password)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, c.transportError(ctx, where, "", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // so the connection can be reused
		return nil, &StatusError{URL: where, Code: resp.StatusCode, hint: c.hint(server, path, resp.StatusCode)}
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody+1))
	if err != nil {
		return nil, c.transportError(ctx, where, "reading the answer: ", err)
	}
	if len(body) > maxBody {
		return nil, fmt.Errorf("fetching %s: the answer is larger than %d MiB", where, maxBody>>20)
	}
	apps, err := decodeApplications(body)
	if err != nil {
		if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); mt != "" && !strings.Contains(mt, "json") {
			return nil, fmt.Errorf("fetching %s: the server answered with %s, not JSON: check that the URL is a Eureka API", where, mt)
		}
		return nil, fmt.Errorf("fetching %s: decoding the answer: %w; check that the URL is a Eureka API", where, err)
	}
	return apps, nil
}

// transportError explains a request that got no complete answer. ctx is the
// caller's context: when it ended, the error says so and nothing more.
func (c *Client) transportError(ctx context.Context, where, doing string, err error) error {
	// url.Error repeats method and URL; say them once.
	var uerr *url.Error
	if errors.As(err, &uerr) {
		err = uerr.Err
	}
	if ctx.Err() != nil {
		return fmt.Errorf("fetching %s: %s%w", where, doing, ctx.Err())
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("fetching %s: %sno answer within %v (%w): check that the server runs and the URL is right, or raise the timeout",
			where, doing, c.timeout, err)
	}
	return fmt.Errorf("fetching %s: %s%w: check that the server runs and the URL is right", where, doing, err)
}

// hint says what to do about an HTTP status from a server.
func (c *Client) hint(server *url.URL, path string, code int) string {
	switch code {
	case http.StatusUnauthorized:
		if !c.auth {
			return "the server wants credentials: set username and password"
		}
		return "the server refused the credentials: check username and password"
	case http.StatusForbidden:
		return "the server refused access: check username and password, and that the user may read the registry"
	case http.StatusNotFound:
		if path == "/apps/delta" {
			return "the server does not serve deltas"
		}
		base := *server
		base.Path = ""
		base.RawPath = ""
		return fmt.Sprintf("no Eureka API at %s: the server URL needs the API's path prefix, such as %s/eureka/v2 (Netflix) or %s/eureka (Spring Cloud, Polaris)",
			server.String(), base.String(), base.String())
	}
	if code >= 500 {
		return "the server failed; it is asked again"
	}
	return ""
}

// StatusError is a server's answer with an HTTP status other than 200.
type StatusError struct {
	// URL is the request's URL; it never holds credentials.
	URL string
	// Code is the HTTP status code.
	Code int
	hint string
}

func (e *StatusError) Error() string {
	msg := fmt.Sprintf("fetching %s: HTTP %d %s", e.URL, e.Code, strings.ToLower(http.StatusText(e.Code)))
	if e.hint != "" {
		msg += ": " + e.hint
	}
	return msg
}
