package kubernetes

import (
	"sync"

	"github.com/caddyserver/caddy/v2"
	"github.com/go-logr/zapr"
	"k8s.io/klog/v2"
)

// redirectKlog sends client-go's logs (klog) to Caddy's logger instead of
// stderr. klog is process-global, so this happens once.
var redirectKlog = sync.OnceFunc(func() {
	klog.SetLoggerWithOptions(zapr.NewLogger(caddy.Log().Named("kubernetes.client")), klog.ContextualLogger(true))
})
