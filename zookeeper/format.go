package zookeeper

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/caddy-discovery/caddy-discovery/upstreams"
)

// The formats a source reads.
const (
	// Curator's service discovery (curator-x-discovery), which Spring Cloud
	// Zookeeper and Dubbo 3's application-level discovery use: one
	// ephemeral node per instance under <base_path>/<service>, its data a
	// JSON ServiceInstance {"name","id","address","port","sslPort",
	// "payload","enabled",…}.
	formatCurator = "curator"
	// Dubbo's interface-level registry: one ephemeral node per provider
	// under <base_path>/<interface>/providers, its name the URL-encoded
	// provider URL tri://10.0.0.1:50051/<interface>?…&weight=100.
	formatDubbo = "dubbo"
	// Apache APISIX's ZooKeeper discovery (apisix/discovery/zookeeper,
	// utils.lua parse_instance_data): one node per instance under
	// <base_path>/<service>, its data a JSON object {"host","port",
	// "weight","metadata"}; an instance without a weight weighs 100, and
	// one of weight 0 gets no request, as in APISIX.
	formatAPISIX = "apisix"
)

var formats = []string{formatCurator, formatDubbo, formatAPISIX}

// defaultBase is a format's registrars' base path.
func defaultBase(format string) string {
	switch format {
	case formatDubbo:
		return "/dubbo"
	case formatAPISIX:
		return "/apisix/discovery/zk"
	}
	return "/services"
}

// path is the node whose children are a service's instances.
func path(format, base, service string) string {
	p := strings.TrimSuffix(base, "/") + "/" + service
	if format == formatDubbo {
		p += "/providers"
	}
	return p
}

// errDisabled marks an instance its registrar took out of service.
var errDisabled = errors.New("disabled")

// decodeCurator reads a Curator ServiceInstance; with sslPort, its sslPort
// instead of its port.
func decodeCurator(data []byte, sslPort bool) (upstreams.Record, error) {
	var v struct {
		Address string `json:"address"`
		Port    *int   `json:"port"`
		SSLPort *int   `json:"sslPort"`
		Enabled *bool  `json:"enabled"`
		Payload *struct {
			Metadata map[string]any `json:"metadata"`
		} `json:"payload"`
	}
	if err := json.Unmarshal(data, &v); err != nil || v.Address == "" {
		return upstreams.Record{}, fmt.Errorf(`not a Curator ServiceInstance {"name","id","address","port",…}; the data starts %q`, upstreams.Clip(string(data)))
	}
	if v.Enabled != nil && !*v.Enabled {
		return upstreams.Record{}, errDisabled
	}
	in := upstreams.Record{Host: v.Address}
	port, field := v.Port, "port"
	if sslPort {
		port, field = v.SSLPort, "sslPort"
	}
	if port == nil {
		return upstreams.Record{}, fmt.Errorf("no %s", field)
	}
	if *port < 1 || *port > 65535 {
		return upstreams.Record{}, fmt.Errorf("%s: the port is not a number in 1-65535", field)
	}
	in.Port = *port
	if v.Payload != nil {
		in.Metadata = upstreams.JSONMetadata(map[string]any(v.Payload.Metadata))
		if in.Metadata == nil {
			in.Metadata = map[string]string{}
		}
		// Spring Cloud Zookeeper's status: only UP instances serve.
		if s, ok := in.Metadata["instance_status"]; ok && !strings.EqualFold(s, "UP") {
			return upstreams.Record{}, errDisabled
		}
		in.Weight = upstreams.ParseWeight(in.Metadata["weight"])
	}
	return in, nil
}

// decodeDubbo reads a provider node's name, a URL-encoded Dubbo URL, of one
// of protocols.
func decodeDubbo(name string, protocols []string) (upstreams.Record, error) {
	raw, err := url.QueryUnescape(name)
	if err != nil {
		return upstreams.Record{}, fmt.Errorf("not a URL-encoded Dubbo URL: %q", upstreams.Clip(name))
	}
	u, err := url.Parse(raw)
	if err != nil || u.Scheme == "" || u.Host == "" {
		return upstreams.Record{}, fmt.Errorf("not a Dubbo provider URL such as tri://10.0.0.1:50051/…: %q", upstreams.Clip(raw))
	}
	if !slices.Contains(protocols, u.Scheme) {
		return upstreams.Record{}, fmt.Errorf("protocol %s, which Caddy does not proxy here (protocols: %s)", u.Scheme, strings.Join(protocols, ", "))
	}
	host, port, err := net.SplitHostPort(u.Host)
	if err != nil {
		return upstreams.Record{}, fmt.Errorf("%q is not ip:port", upstreams.Clip(u.Host))
	}
	p, err := upstreams.ParsePort(port)
	if err != nil {
		return upstreams.Record{}, err
	}
	in := upstreams.Record{Host: host, Port: p, Metadata: map[string]string{}}
	q := u.Query()
	if q.Get("enabled") == "false" || q.Get("disabled") == "true" {
		return upstreams.Record{}, errDisabled
	}
	for k, vs := range q {
		if len(vs) > 0 {
			in.Metadata[k] = vs[0]
		}
	}
	in.Weight = upstreams.ParseWeight(q.Get("weight"))
	return in, nil
}

// decodeAPISIX reads an instance as APISIX's ZooKeeper discovery does:
// {"host":"10.0.0.1","port":8080,"weight":100,"metadata":{…}}, the port and
// the weight numbers or strings holding one.
func decodeAPISIX(data []byte) (upstreams.Record, error) {
	var v struct {
		Host     string         `json:"host"`
		Port     any            `json:"port"`
		Weight   any            `json:"weight"`
		Metadata map[string]any `json:"metadata"`
	}
	if err := json.Unmarshal(data, &v); err != nil || v.Host == "" || v.Port == nil {
		return upstreams.Record{}, fmt.Errorf(`not an APISIX instance {"host","port","weight","metadata"}; the data starts %q`, upstreams.Clip(string(data)))
	}
	port, err := upstreams.ParsePort(jsonText(v.Port))
	if err != nil {
		return upstreams.Record{}, fmt.Errorf("port: %w", err)
	}
	in := upstreams.Record{Host: v.Host, Port: port, Weight: 100, Metadata: upstreams.JSONMetadata(map[string]any(v.Metadata))}
	if w, err := strconv.ParseFloat(jsonText(v.Weight), 64); err == nil {
		if !(w > 0) {
			return upstreams.Record{}, errDisabled // APISIX sends it no request
		}
		in.Weight = upstreams.ParseWeight(jsonText(v.Weight)) // 0, and so 1, for an infinite one
	}
	return in, nil
}

// jsonText is a JSON number or string as text; "" for anything else.
func jsonText(v any) string {
	switch v := v.(type) {
	case string:
		return v
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64)
	}
	return ""
}
