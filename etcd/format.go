package etcd

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/url"
	"strconv"
	"strings"

	"github.com/caddy-discovery/caddy-discovery/upstreams"
)

// The formats a source reads: each is what a registrar writes under a key
// prefix, one key per instance.
const (
	// etcd's own gRPC naming (go.etcd.io/etcd/client/v3/naming/endpoints,
	// which gRPC's etcd resolver reads): key <target>/<anything>, value
	// {"Op":0,"Addr":"10.0.0.1:8080","Metadata":…}.
	formatEtcd = "etcd"
	// go-kratos's etcd registry (contrib/registry/etcd): key
	// /microservices/<name>/<id>, value a ServiceInstance
	// {"id","name","version","metadata",{…},"endpoints":["http://10.0.0.1:8000",
	// "grpc://10.0.0.1:9000"]}; the http endpoint is used.
	formatKratos = "kratos"
	// go-zero's discov publisher: key <key>/<lease ID>, value the address
	// 10.0.0.1:8080 as plain text.
	formatGoZero = "go-zero"
	// go-micro's etcd registry (go-micro.dev/v5 and its plugins,
	// registry/etcd): key /micro/registry/<name>/<node id> ('/' in either
	// written as '-'), value the Service with that one node
	// {"name","version","metadata","nodes":[{"id","address","metadata"}]}.
	formatGoMicro = "go-micro"
	// A JSON object whose fields the source names (see JSONFields): Kitex,
	// APISIX-style and home-grown layouts.
	formatJSON = "json"
)

var formats = []string{formatEtcd, formatKratos, formatGoZero, formatGoMicro, formatJSON}

// defaultPrefix is the key prefix a format's registrar writes a service's
// instances under.
func defaultPrefix(format, service string) string {
	switch format {
	case formatKratos:
		return "/microservices/" + service + "/"
	case formatGoMicro:
		return "/micro/registry/" + strings.ReplaceAll(service, "/", "-") + "/"
	}
	return service + "/"
}

// JSONFields names the fields of the json format's objects.
type JSONFields struct {
	// The field with the instance's IP address, or its address and port as
	// ip:port. Default: "address"
	Address string `json:"address,omitempty"`

	// The field with the port (a number or a string), when the address
	// has none. Default: "port"
	Port string `json:"port,omitempty"`

	// The field with the instance's weight (a number, or a string that
	// holds one), for lb_policy registry_weighted; an instance without one
	// weighs 1. Default: "weight"
	Weight string `json:"weight,omitempty"`

	// The field with the instance's metadata (an object), which `metadata`
	// selects by. Default: "metadata"
	Metadata string `json:"metadata,omitempty"`
}

// names fills in the defaults.
func (f JSONFields) names() JSONFields {
	return JSONFields{
		Address:  cmpString(f.Address, "address"),
		Port:     cmpString(f.Port, "port"),
		Weight:   cmpString(f.Weight, "weight"),
		Metadata: cmpString(f.Metadata, "metadata"),
	}
}

// decode reads one key's value in format. Errors say what is wrong with
// the value, never more of it than the offending part.
func decode(format string, fields JSONFields, value []byte) (upstreams.Record, error) {
	switch format {
	case formatEtcd:
		return decodeEtcd(value)
	case formatKratos:
		return decodeKratos(value)
	case formatGoZero:
		return decodeHostPort(strings.TrimSpace(string(value)))
	case formatGoMicro:
		return decodeGoMicro(value)
	case formatJSON:
		return decodeJSON(fields.names(), value)
	}
	return upstreams.Record{}, fmt.Errorf("unknown format %q", format)
}

func decodeEtcd(value []byte) (upstreams.Record, error) {
	var v struct {
		Op       *int
		Addr     string
		Metadata any
	}
	if err := json.Unmarshal(value, &v); err != nil || v.Op == nil {
		return upstreams.Record{}, errors.New(`not an etcd naming endpoint {"Op":0,"Addr":"ip:port"}` + jsonHint(value))
	}
	if *v.Op != 0 {
		return upstreams.Record{}, fmt.Errorf("Op is %d, not 0 (Add)", *v.Op)
	}
	in, err := decodeHostPort(v.Addr)
	if err != nil {
		return in, fmt.Errorf("Addr: %w", err)
	}
	in.Metadata, in.Weight = metadataOf(v.Metadata)
	return in, nil
}

func decodeKratos(value []byte) (upstreams.Record, error) {
	var v struct {
		ID        string            `json:"id"`
		Version   string            `json:"version"`
		Metadata  map[string]string `json:"metadata"`
		Endpoints []string          `json:"endpoints"`
	}
	if err := json.Unmarshal(value, &v); err != nil || v.Endpoints == nil {
		return upstreams.Record{}, errors.New(`not a kratos ServiceInstance {"id","name","endpoints":["http://ip:port"]}` + jsonHint(value))
	}
	for _, e := range v.Endpoints {
		u, err := url.Parse(e)
		if err != nil || u.Scheme != "http" {
			continue
		}
		in, err := decodeHostPort(u.Host)
		if err != nil {
			return in, fmt.Errorf("endpoint %q: %w", e, err)
		}
		in.Metadata = v.Metadata
		if v.Version != "" {
			in.Metadata = withDefault(in.Metadata, "version", v.Version)
		}
		in.Weight = weightOf(v.Metadata["weight"])
		return in, nil
	}
	return upstreams.Record{}, fmt.Errorf("no http:// endpoint among %q: Caddy proxies HTTP; register the service's HTTP server too", v.Endpoints)
}

func decodeGoMicro(value []byte) (upstreams.Record, error) {
	var v struct {
		Version  string            `json:"version"`
		Metadata map[string]string `json:"metadata"`
		Nodes    []struct {
			Address  string            `json:"address"`
			Metadata map[string]string `json:"metadata"`
		} `json:"nodes"`
	}
	if err := json.Unmarshal(value, &v); err != nil || v.Nodes == nil {
		return upstreams.Record{}, errors.New(`not a go-micro Service {"name","version","nodes":[{"id","address"}]}` + jsonHint(value))
	}
	if len(v.Nodes) != 1 {
		return upstreams.Record{}, fmt.Errorf("holds %d nodes; go-micro's etcd registry writes one a key", len(v.Nodes))
	}
	node := v.Nodes[0]
	in, err := decodeHostPort(node.Address)
	if err != nil {
		return in, fmt.Errorf("address: %w", err)
	}
	// The node's metadata, then the service's and its version where the
	// node has none.
	in.Metadata = make(map[string]string, len(node.Metadata)+len(v.Metadata)+1)
	if v.Version != "" {
		in.Metadata["version"] = v.Version
	}
	maps.Copy(in.Metadata, v.Metadata)
	maps.Copy(in.Metadata, node.Metadata)
	return in, nil
}

func decodeJSON(f JSONFields, value []byte) (upstreams.Record, error) {
	var obj map[string]any
	if err := json.Unmarshal(value, &obj); err != nil || obj == nil {
		return upstreams.Record{}, errors.New("not a JSON object" + jsonHint(value))
	}
	addr, ok := obj[f.Address].(string)
	if !ok {
		return upstreams.Record{}, fmt.Errorf("no string field %q with the address", f.Address)
	}
	var in upstreams.Record
	port := ""
	if host, p, err := net.SplitHostPort(addr); err == nil {
		in.Host, port = host, p
	} else {
		in.Host = addr
		switch p := obj[f.Port].(type) {
		case float64:
			port = strconv.FormatFloat(p, 'f', -1, 64)
		case string:
			port = p
		default:
			return upstreams.Record{}, fmt.Errorf("%q has no port, and there is no field %q with one", addr, f.Port)
		}
	}
	var err error
	if in.Port, err = upstreams.ParsePort(port); err != nil {
		return upstreams.Record{}, fmt.Errorf("%s: %w", f.Port, err)
	}
	in.Weight = weightOf(obj[f.Weight])
	in.Metadata, _ = metadataOf(obj[f.Metadata])
	return in, nil
}

// decodeHostPort reads host:port.
func decodeHostPort(s string) (upstreams.Record, error) {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return upstreams.Record{}, fmt.Errorf("%q is not ip:port", upstreams.Clip(s))
	}
	p, err := upstreams.ParsePort(port)
	return upstreams.Record{Host: host, Port: p}, err
}

// metadataOf reads a metadata object: its string values, numbers and
// booleans as text, and a numeric "weight" as the weight.
func metadataOf(v any) (map[string]string, float64) {
	obj, _ := v.(map[string]any)
	return upstreams.JSONMetadata(v), weightOf(obj["weight"])
}

// weightOf reads a weight, a number or a string holding one (see
// upstreams.ParseWeight).
func weightOf(v any) float64 {
	switch v := v.(type) {
	case float64:
		return upstreams.ParseWeight(strconv.FormatFloat(v, 'g', -1, 64))
	case string:
		return upstreams.ParseWeight(v)
	}
	return 0
}

func withDefault(md map[string]string, k, v string) map[string]string {
	if _, ok := md[k]; ok {
		return md
	}
	out := make(map[string]string, len(md)+1)
	for mk, mv := range md {
		out[mk] = mv
	}
	out[k] = v
	return out
}

// jsonHint shows the start of a value that is not what a format expects,
// so that a key of another format is recognized.
func jsonHint(value []byte) string {
	return fmt.Sprintf("; the value starts %q", upstreams.Clip(string(value)))
}

func cmpString(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
