// Package discovery plugs registry-fed upstream sources into Caddy's
// reverse_proxy. Building Caddy with this module,
//
//	xcaddy build --with github.com/caddy-discovery/caddy-discovery
//
// registers every source and the selection policy that uses their weights:
//
//   - http.reverse_proxy.upstreams.k8s: Kubernetes Services and EndpointSlices
//   - http.reverse_proxy.upstreams.nacos: Nacos service instances
//   - http.reverse_proxy.selection_policies.registry_weighted: smooth weighted
//     round robin by the weights the registries publish
package discovery

import (
	// Each package registers its modules.
	_ "github.com/caddy-discovery/caddy-discovery/consul"
	_ "github.com/caddy-discovery/caddy-discovery/eureka"
	_ "github.com/caddy-discovery/caddy-discovery/kubernetes"
	_ "github.com/caddy-discovery/caddy-discovery/nacos"
	_ "github.com/caddy-discovery/caddy-discovery/selection"
)
