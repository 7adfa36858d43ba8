package eureka

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func newTestClient(t testing.TB, cfg Config) *Client {
	t.Helper()
	c, err := NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.CloseIdleConnections)
	return c
}

// deadServer is a URL where nothing listens.
func deadServer(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return "http://" + addr + "/eureka"
}

func TestClientFetches(t *testing.T) {
	f := newFakeEureka(t)
	f.set("WEB", fakeInstance{"a", "10.0.0.1", 8080, StatusUp})
	c := newTestClient(t, Config{Servers: []string{f.base() + "/"}})
	apps, err := c.Apps(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if got := ids(apps.Instances("WEB")); got != "a=UP" || apps.HashCode != "UP_1_" {
		t.Errorf("apps: %s, hash code %q", got, apps.HashCode)
	}
	f.set("WEB", fakeInstance{"a", "10.0.0.1", 8080, StatusDown})
	delta, err := c.Delta(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if got := delta.Instances("WEB"); len(got) != 1 || got[0].action != "ADDED" && got[0].action != "MODIFIED" {
		t.Errorf("delta: %+v", got)
	}
	if f.accept[0] != "application/json" {
		t.Errorf("Accept: %q", f.accept[0])
	}
}

func TestClientFailover(t *testing.T) {
	f := newFakeEureka(t)
	f.set("WEB", fakeInstance{"a", "10.0.0.1", 8080, StatusUp})
	failing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	defer failing.Close()
	dead := deadServer(t)
	c := newTestClient(t, Config{Servers: []string{dead, failing.URL + "/eureka", f.base()}})
	for range 3 {
		if _, err := c.Apps(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	// The first call tried all three; the others went straight to the one
	// that answered.
	if fulls, _ := f.counts(); fulls != 3 {
		t.Errorf("working server asked %d times, want 3", fulls)
	}
	if got := c.current.Load(); got != 2 {
		t.Errorf("current server %d, want 2", got)
	}

	f.Close()
	_, err := c.Apps(t.Context())
	if err == nil {
		t.Fatal("no error with all servers down")
	}
	msg := err.Error()
	for _, want := range []string{"all 3 eureka servers failed", dead + "/apps", failing.URL + "/eureka/apps: HTTP 503", "check that the server runs"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q does not say %q", msg, want)
		}
	}
	if strings.Contains(msg, "\n") {
		t.Errorf("error spans lines: %q", msg)
	}
	var status *StatusError
	if !errors.As(err, &status) || status.Code != http.StatusServiceUnavailable {
		t.Errorf("error does not wrap the 503: %v", err)
	}
}

func TestClientAuth(t *testing.T) {
	const password = "s3cr3t-pa55"
	f := newFakeEureka(t)
	f.user, f.password = "reader", password
	f.set("WEB", fakeInstance{"a", "10.0.0.1", 8080, StatusUp})

	c := newTestClient(t, Config{Servers: []string{f.base()}, Username: "reader", Password: password})
	if _, err := c.Apps(t.Context()); err != nil {
		t.Fatal(err)
	}

	c = newTestClient(t, Config{Servers: []string{f.base()}, Username: "reader", Password: "wrong-" + password})
	_, err := c.Apps(t.Context())
	if err == nil || !strings.Contains(err.Error(), "HTTP 401 unauthorized: the server refused the credentials: check username and password") {
		t.Errorf("wrong password: %v", err)
	}
	if strings.Contains(err.Error(), password) {
		t.Errorf("error shows the password: %v", err)
	}

	c = newTestClient(t, Config{Servers: []string{f.base()}})
	if _, err := c.Apps(t.Context()); err == nil || !strings.Contains(err.Error(), "set username and password") {
		t.Errorf("no credentials: %v", err)
	}
}

func TestClientConfigErrors(t *testing.T) {
	const password = "s3cr3t-pa55"
	tests := []struct {
		cfg  Config
		want string
	}{
		{Config{}, "no servers"},
		{Config{Servers: []string{"http://reader:" + password + "@eureka:8761/eureka"}}, "http://REDACTED@eureka:8761/eureka holds credentials; set username and password separately"},
		{Config{Servers: []string{"http://reader:" + password + "@eureka:87x61/eureka"}}, `"http://REDACTED@eureka:87x61/eureka" is not a URL`},
		{Config{Servers: []string{"eureka:8761"}}, "not an http or https URL"},
		{Config{Servers: []string{"http:///eureka"}}, "not an http or https URL"},
		{Config{Servers: []string{"http://eureka:8761/eureka?x=1"}}, "query or fragment"},
		{Config{Servers: []string{"http://eureka:8761"}, Username: "a:b"}, "username holds ':'"},
	}
	for _, tt := range tests {
		_, err := NewClient(tt.cfg)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%+v: error %v, want one saying %q", tt.cfg.Servers, err, tt.want)
		}
		if err != nil && strings.Contains(err.Error(), password) {
			t.Errorf("error shows the password: %v", err)
		}
	}
}

func TestClientStatusHints(t *testing.T) {
	f := newFakeEureka(t)
	// The fake serves under /eureka; the server URL without it gets 404s.
	c := newTestClient(t, Config{Servers: []string{f.URL}})
	_, err := c.Apps(t.Context())
	want := "HTTP 404 not found: no Eureka API at " + f.URL + ": the server URL needs the API's path prefix, such as " +
		f.URL + "/eureka/v2 (Netflix) or " + f.URL + "/eureka (Spring Cloud, Polaris)"
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("404: %v\nwant it to say %q", err, want)
	}

	f.status["/eureka/apps"] = http.StatusForbidden
	c = newTestClient(t, Config{Servers: []string{f.base()}})
	if _, err := c.Apps(t.Context()); err == nil || !strings.Contains(err.Error(), "HTTP 403 forbidden: the server refused access") {
		t.Errorf("403: %v", err)
	}

	html := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = w.Write([]byte("<html>login</html>"))
	}))
	defer html.Close()
	c = newTestClient(t, Config{Servers: []string{html.URL}})
	if _, err := c.Apps(t.Context()); err == nil || !strings.Contains(err.Error(), "the server answered with text/html, not JSON") {
		t.Errorf("HTML: %v", err)
	}
}

func TestClientTimeoutAndCancel(t *testing.T) {
	release := make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer slow.Close()
	defer close(release)
	f := newFakeEureka(t)

	c := newTestClient(t, Config{Servers: []string{slow.URL, f.base()}, Timeout: 100 * time.Millisecond})
	start := time.Now()
	if _, err := c.Apps(t.Context()); err != nil {
		t.Fatalf("the second server did not take over from the slow one: %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("failover took %v with a 100ms timeout", d)
	}

	c = newTestClient(t, Config{Servers: []string{slow.URL}, Timeout: 100 * time.Millisecond})
	_, err := c.Apps(t.Context())
	if err == nil || !strings.Contains(err.Error(), "no answer within 100ms") || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("timeout: %v", err)
	}

	// Cancellation stops at once and tries no other server.
	c = newTestClient(t, Config{Servers: []string{slow.URL, f.base()}, Timeout: time.Minute})
	ctx, cancel := context.WithCancel(t.Context())
	time.AfterFunc(50*time.Millisecond, cancel)
	fulls, _ := f.counts()
	_, err = c.Apps(ctx)
	if !errors.Is(err, context.Canceled) || strings.Contains(err.Error(), "check") {
		t.Errorf("cancelled: %v", err)
	}
	if now, _ := f.counts(); now != fulls {
		t.Errorf("a cancelled request went on to the next server")
	}
}
