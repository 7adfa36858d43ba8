package zookeeper

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
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
)

var formats = []string{formatCurator, formatDubbo}

// defaultBase is a format's registrars' base path.
func defaultBase(format string) string {
	if format == formatDubbo {
		return "/dubbo"
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

// instance is what a format reads from one node.
type instance struct {
	host     string
	port     int
	weight   float64 // 0: none given
	metadata map[string]string
}

// errDisabled marks an instance its registrar took out of service.
var errDisabled = errors.New("disabled")

// decodeCurator reads a Curator ServiceInstance; with sslPort, its sslPort
// instead of its port.
func decodeCurator(data []byte, sslPort bool) (instance, error) {
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
		return instance{}, fmt.Errorf(`not a Curator ServiceInstance {"name","id","address","port",…}; the data starts %q`, clip(string(data)))
	}
	if v.Enabled != nil && !*v.Enabled {
		return instance{}, errDisabled
	}
	in := instance{host: v.Address}
	port, field := v.Port, "port"
	if sslPort {
		port, field = v.SSLPort, "sslPort"
	}
	if port == nil {
		return instance{}, fmt.Errorf("no %s", field)
	}
	in.port = *port
	if err := checkPort(in.port); err != nil {
		return instance{}, fmt.Errorf("%s: %w", field, err)
	}
	if v.Payload != nil {
		in.metadata = map[string]string{}
		for k, x := range v.Payload.Metadata {
			switch x := x.(type) {
			case string:
				in.metadata[k] = x
			case float64:
				in.metadata[k] = strconv.FormatFloat(x, 'f', -1, 64)
			case bool:
				in.metadata[k] = strconv.FormatBool(x)
			}
		}
		// Spring Cloud Zookeeper's status: only UP instances serve.
		if s, ok := in.metadata["instance_status"]; ok && !strings.EqualFold(s, "UP") {
			return instance{}, errDisabled
		}
		in.weight = weightOf(in.metadata["weight"])
	}
	return in, nil
}

// decodeDubbo reads a provider node's name, a URL-encoded Dubbo URL, of one
// of protocols.
func decodeDubbo(name string, protocols []string) (instance, error) {
	raw, err := url.QueryUnescape(name)
	if err != nil {
		return instance{}, fmt.Errorf("not a URL-encoded Dubbo URL: %q", clip(name))
	}
	u, err := url.Parse(raw)
	if err != nil || u.Scheme == "" || u.Host == "" {
		return instance{}, fmt.Errorf("not a Dubbo provider URL such as tri://10.0.0.1:50051/…: %q", clip(raw))
	}
	if !slices.Contains(protocols, u.Scheme) {
		return instance{}, fmt.Errorf("protocol %s, which Caddy does not proxy here (protocols: %s)", u.Scheme, strings.Join(protocols, ", "))
	}
	host, port, err := net.SplitHostPort(u.Host)
	if err != nil {
		return instance{}, fmt.Errorf("%q is not ip:port", clip(u.Host))
	}
	in := instance{host: host, port: atoi(port), metadata: map[string]string{}}
	if err := checkPort(in.port); err != nil {
		return instance{}, err
	}
	q := u.Query()
	if q.Get("enabled") == "false" || q.Get("disabled") == "true" {
		return instance{}, errDisabled
	}
	for k, vs := range q {
		if len(vs) > 0 {
			in.metadata[k] = vs[0]
		}
	}
	in.weight = weightOf(q.Get("weight"))
	return in, nil
}

func checkPort(p int) error {
	if p < 1 || p > 65535 {
		return errors.New("the port is not a number in 1-65535")
	}
	return nil
}

func weightOf(s string) float64 {
	w, err := strconv.ParseFloat(s, 64)
	if err != nil || !(w > 0) || math.IsInf(w, 0) {
		return 0
	}
	return w
}

func atoi(s string) int {
	n, err := strconv.Atoi(s)
	if err != nil {
		return -1
	}
	return n
}

// clip shortens s for a message.
func clip(s string) string {
	if len(s) > 60 {
		return s[:60] + "…"
	}
	return s
}
