// Package discovery plugs registry-fed upstream sources into Caddy's
// reverse_proxy. Building Caddy with this module,
//
//	xcaddy build --with github.com/caddy-discovery/caddy-discovery
//
// registers every source, with the app that holds its named connections,
// the selection policy that uses their weights, and the admin dump:
//
//   - http.reverse_proxy.upstreams.k8s (app k8s): Kubernetes Services and
//     EndpointSlices, through client-go informers
//   - http.reverse_proxy.upstreams.nacos (app nacos): Nacos service
//     instances, through nacos-sdk-go push subscriptions
//   - http.reverse_proxy.upstreams.consul (app consul): passing Consul
//     instances, through blocking queries
//   - http.reverse_proxy.upstreams.eureka (app eureka): UP Eureka instances,
//     through delta polling
//   - http.reverse_proxy.upstreams.etcd (app etcd): the instances registrars
//     keep under a key prefix in etcd (etcd naming, go-kratos, go-zero,
//     go-micro, JSON), through an etcd watch
//   - http.reverse_proxy.upstreams.zookeeper (app zookeeper): the instances
//     registrars keep in ZooKeeper (Curator/Spring Cloud, Dubbo, APISIX),
//     through ZooKeeper watches
//   - http.handlers.discovery_error: in handle_errors, the status a lookup
//     of a service chosen per request decided (404, 503, 504)
//   - http.reverse_proxy.selection_policies.registry_weighted: smooth weighted
//     round robin by the weights the registries publish
//   - admin.api.discovery: GET /discovery/upstreams, what every source
//     proxies to now
//
// Every source is built on the kit in package upstreams: see the README's
// "Adding a registry".
package discovery

import (
	// Each package registers its modules.
	_ "github.com/caddy-discovery/caddy-discovery/consul"
	_ "github.com/caddy-discovery/caddy-discovery/discoveryerror"
	_ "github.com/caddy-discovery/caddy-discovery/etcd"
	_ "github.com/caddy-discovery/caddy-discovery/eureka"
	_ "github.com/caddy-discovery/caddy-discovery/kubernetes"
	_ "github.com/caddy-discovery/caddy-discovery/nacos"
	_ "github.com/caddy-discovery/caddy-discovery/selection"
	_ "github.com/caddy-discovery/caddy-discovery/zookeeper"
)
