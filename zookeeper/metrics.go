package zookeeper

import "github.com/caddy-discovery/caddy-discovery/upstreams"

// publishSeconds is Caddy's own share of a ZooKeeper change's propagation:
// from the answer to the read that a fired watch caused to every source of
// the path having published it. ZooKeeper's side (the write, the watch
// event, the read's round trip) comes before it.
var publishSeconds = upstreams.NewConnectionHistogram("caddy_discovery_zookeeper_publish_seconds",
	"Time from a ZooKeeper read's answer to Caddy publishing the new upstreams of every source of the path.",
	upstreams.PublishBuckets)
