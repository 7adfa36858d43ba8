package upstreams

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/prometheus/client_golang/prometheus"
)

func BenchmarkParts(b *testing.B) {
	repl := caddy.NewReplacer()
	repl.Set("http.regexp.svc.1", "shop-cart")
	req := httptest.NewRequest(http.MethodGet, "/shop-cart/", nil).WithContext(
		context.WithValue(context.WithValue(context.Background(), caddy.ReplacerCtxKey, repl), caddyhttp.VarsCtxKey, map[string]any{}))
	b.Run("ctx", func(b *testing.B) {
		for b.Loop() {
			_ = req.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
		}
	})
	b.Run("get", func(b *testing.B) {
		for b.Loop() {
			v, _ := repl.Get("http.regexp.svc.1")
			_ = caddy.ToString(v)
		}
	})
	m := map[string]int{"shop-cart": 1, "a": 2}
	b.Run("map", func(b *testing.B) {
		for b.Loop() {
			_ = m["shop-cart"]
		}
	})
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "x"})
	b.Run("inc", func(b *testing.B) {
		for b.Loop() {
			c.Inc()
		}
	})
}
