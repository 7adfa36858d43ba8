// Package discoveryerror provides the http.handlers.discovery_error
// handler: in a site's handle_errors, it answers a request whose service,
// chosen per request, found no upstream with the status the lookup decided.
package discoveryerror

import (
	"net/http"
	"strconv"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/caddy-discovery/caddy-discovery/upstreams"
)

func init() {
	caddy.RegisterModule(Handler{})
	httpcaddyfile.RegisterHandlerDirective("discovery_error", func(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
		var d Handler
		return d, d.UnmarshalCaddyfile(h.Dispenser)
	})
	httpcaddyfile.RegisterDirectiveOrder("discovery_error", httpcaddyfile.Before, "respond")
}

// Handler answers, in handle_errors, a request whose service was chosen per
// request (an upstream source with `allow`) and found no upstream, with the
// status the lookup decided instead of reverse_proxy's 503: the source's
// `denied_status` (404 by default) for a name that is malformed, not
// allowed or unknown to the registry, 503 with Retry-After over the
// source's bounds, 504 when the registry did not answer in time. The body
// is the status text alone: it tells a client nothing about which names
// exist. Other errors pass to the next handler.
//
//	handle_errors {
//		discovery_error
//	}
type Handler struct{}

// CaddyModule returns the Caddy module information.
func (Handler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.discovery_error",
		New: func() caddy.Module { return new(Handler) },
	}
}

// ServeHTTP answers with the lookup's status, or passes the request on.
func (Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	v, _ := caddyhttp.GetVar(r.Context(), upstreams.DiscoveryStatusVar).(string)
	status, err := strconv.Atoi(v)
	if err != nil || status < 400 || status > 599 {
		return next.ServeHTTP(w, r)
	}
	if ra, _ := caddyhttp.GetVar(r.Context(), upstreams.RetryAfterVar).(string); ra != "" {
		w.Header().Set("Retry-After", ra)
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(http.StatusText(status) + "\n"))
	return nil
}

// UnmarshalCaddyfile reads `discovery_error`, which takes no argument.
func (*Handler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // the directive's name
	if d.NextArg() || d.NextBlock(0) {
		return d.ArgErr()
	}
	return nil
}

// Interface guards
var (
	_ caddyhttp.MiddlewareHandler = Handler{}
	_ caddyfile.Unmarshaler       = (*Handler)(nil)
)
