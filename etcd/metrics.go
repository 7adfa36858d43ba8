package etcd

import "github.com/caddy-discovery/caddy-discovery/upstreams"

// publishSeconds is Caddy's own share of an etcd change's propagation: from
// a watch event's (or a read's) arrival to every source of the prefix
// having published it. etcd's side (the write's commit, the event's
// delivery) comes before it.
var publishSeconds = upstreams.NewConnectionHistogram("caddy_discovery_etcd_publish_seconds",
	"Time from an etcd watch event's arrival to Caddy publishing the new upstreams of every source of the key prefix.",
	upstreams.PublishBuckets)
