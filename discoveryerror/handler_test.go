package discoveryerror

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/caddy-discovery/caddy-discovery/upstreams"
)

func TestHandler(t *testing.T) {
	next := caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		w.WriteHeader(http.StatusTeapot)
		return nil
	})
	for name, tc := range map[string]struct {
		vars       map[string]any
		status     int
		retryAfter string
		body       string
	}{
		"denied":        {map[string]any{upstreams.DiscoveryStatusVar: "404"}, 404, "", "Not Found\n"},
		"over capacity": {map[string]any{upstreams.DiscoveryStatusVar: "503", upstreams.RetryAfterVar: "30"}, 503, "30", "Service Unavailable\n"},
		"timeout":       {map[string]any{upstreams.DiscoveryStatusVar: "504"}, 504, "", "Gateway Timeout\n"},
		"other error":   {map[string]any{}, http.StatusTeapot, "", ""},
		"not a status":  {map[string]any{upstreams.DiscoveryStatusVar: "200"}, http.StatusTeapot, "", ""},
	} {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r = r.WithContext(context.WithValue(r.Context(), caddyhttp.VarsCtxKey, tc.vars))
		w := httptest.NewRecorder()
		if err := (Handler{}).ServeHTTP(w, r, next); err != nil {
			t.Fatal(err)
		}
		if w.Code != tc.status || w.Header().Get("Retry-After") != tc.retryAfter || w.Body.String() != tc.body {
			t.Errorf("%s: %d, Retry-After %q, body %q; want %d, %q, %q", name, w.Code, w.Header().Get("Retry-After"), w.Body.String(), tc.status, tc.retryAfter, tc.body)
		}
	}
}

func TestUnmarshalCaddyfile(t *testing.T) {
	var h Handler
	if err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser("discovery_error")); err != nil {
		t.Fatal(err)
	}
	if err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser("discovery_error 404")); err == nil {
		t.Error("an argument was accepted")
	}
}
