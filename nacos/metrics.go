package nacos

import (
	"net"
	"strconv"
	"strings"

	"github.com/nacos-group/nacos-sdk-go/v2/vo"

	"github.com/caddy-discovery/caddy-discovery/upstreams"
)

// publishSeconds is Caddy's own share of a Nacos change's propagation: from
// the SDK handing over an instance list (its push callback) to every source
// of the service having published it. The server's push and the SDK's
// delivery come before it and are not seen by Caddy.
var publishSeconds = upstreams.NewConnectionHistogram("caddy_discovery_nacos_publish_seconds",
	"Time from the Nacos SDK's push callback to Caddy publishing the new upstreams of every source of the service.",
	upstreams.PublishBuckets)

// connectionName is the connection label of a client's metrics: the name of
// its server in the nacos app, else its addresses as host:port, as errors
// show them (addresses never hold credentials: they are refused).
func connectionName(name string, param vo.NacosClientParam) string {
	if name != "" {
		return name
	}
	addrs := make([]string, len(param.ServerConfigs))
	for i, s := range param.ServerConfigs {
		addrs[i] = net.JoinHostPort(s.IpAddr, strconv.FormatUint(s.Port, 10))
	}
	return strings.Join(addrs, ",")
}
