package zookeeper

import (
	"errors"
	"net/url"
	"slices"
	"strings"
	"testing"

	"go.uber.org/zap"

	"github.com/caddy-discovery/caddy-discovery/upstreams"
)

// spring is a node as Curator writes it for Spring Cloud Zookeeper (the
// JSON of integration/zk-registrar, copied from a real ZooKeeper).
const spring = `{"name":"orders","id":"i1","address":"10.0.0.1","port":8080,"sslPort":null,"payload":{"@class":"org.springframework.cloud.zookeeper.discovery.ZookeeperInstance","id":"i1","name":"orders","metadata":{"zone":"east","instance_status":"UP","weight":"3"}},"registrationTimeUTC":1796424302231,"serviceType":"DYNAMIC","uriSpec":null}`

func TestDecodeCurator(t *testing.T) {
	in, err := decodeCurator([]byte(spring), false)
	if err != nil || in.Host != "10.0.0.1" || in.Port != 8080 || in.Weight != 3 || in.Metadata["zone"] != "east" {
		t.Fatalf("%+v, %v", in, err)
	}
	for data, want := range map[string]string{
		strings.Replace(spring, `"UP"`, `"DOWN"`, 1):                    "disabled",
		strings.Replace(spring, `"uriSpec":null`, `"enabled":false`, 1): "disabled",
		`{"name":"x","address":"10.0.0.1","port":null,"sslPort":8443}`:  "no port",
		`10.0.0.1:8080`: "not a Curator ServiceInstance",
		`{"name":"x","address":"10.0.0.1","port":70000}`: "port: the port is not a number",
	} {
		_, err := decodeCurator([]byte(data), false)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", data, err, want)
		}
	}
	if in, err := decodeCurator([]byte(`{"name":"x","address":"10.0.0.1","port":null,"sslPort":8443}`), true); err != nil || in.Port != 8443 {
		t.Errorf("sslPort: %+v, %v", in, err)
	}
}

func TestDecodeDubbo(t *testing.T) {
	name := url.QueryEscape("tri://10.0.0.2:50051/org.example.Greeter?application=greeter&version=1.0.0&weight=200")
	in, err := decodeDubbo(name, []string{"tri", "rest"})
	if err != nil || in.Host != "10.0.0.2" || in.Port != 50051 || in.Weight != 200 || in.Metadata["version"] != "1.0.0" {
		t.Fatalf("%+v, %v", in, err)
	}
	for raw, want := range map[string]string{
		"dubbo://10.0.0.2:20880/org.example.Greeter":             "protocol dubbo, which Caddy does not proxy here",
		"tri://10.0.0.2:50051/org.example.Greeter?enabled=false": "disabled",
		"tri://10.0.0.2:50051/org.example.Greeter?disabled=true": "disabled",
		"tri://10.0.0.2/org.example.Greeter":                     "is not ip:port",
		"garbage":                                                "not a Dubbo provider URL",
	} {
		_, err := decodeDubbo(url.QueryEscape(raw), []string{"tri", "rest"})
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", raw, err, want)
		}
	}
	if _, err := decodeDubbo("tri%ZZ", nil); err == nil || errors.Is(err, errDisabled) {
		t.Errorf("bad escape: %v", err)
	}
}

func TestDecodeAPISIX(t *testing.T) {
	in, err := decodeAPISIX([]byte(`{"host":"10.0.0.3","port":"8080","weight":20,"metadata":{"zone":"west","canary":true}}`))
	if err != nil || in.Host != "10.0.0.3" || in.Port != 8080 || in.Weight != 20 || in.Metadata["zone"] != "west" || in.Metadata["canary"] != "true" {
		t.Fatalf("%+v, %v", in, err)
	}
	if in, err := decodeAPISIX([]byte(`{"host":"10.0.0.3","port":8080}`)); err != nil || in.Weight != 100 {
		t.Errorf("no weight: %+v, %v; want APISIX's 100", in, err)
	}
	for data, want := range map[string]string{
		`{"host":"10.0.0.3","port":8080,"weight":0}`: "disabled",
		`{"host":"10.0.0.3"}`:                        "not an APISIX instance",
		`{"host":"10.0.0.3","port":"http"}`:          "port: the port is not a number",
		`{"address":"10.0.0.3","port":80}`:           "not an APISIX instance",
		`[1]`:                                        "not an APISIX instance",
	} {
		if _, err := decodeAPISIX([]byte(data)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", data, err, want)
		}
	}
}

// TestViewTargets: a view selects UP, enabled instances with an IP address
// or a host name (served as it is, never looked up) that match the
// metadata, and says why when nothing is left.
func TestViewTargets(t *testing.T) {
	nodes := []node{
		{"i1", []byte(spring)},
		{"i2", []byte(strings.NewReplacer(`"10.0.0.1"`, `"web-2.local"`, `"i1"`, `"i2"`).Replace(spring))},
		{"i3", []byte(strings.Replace(spring, `"UP"`, `"OUT_OF_SERVICE"`, 1))},
		{"i4", []byte(strings.NewReplacer(`"10.0.0.1"`, `"0.0.0.0"`, `"i1"`, `"i4"`).Replace(spring))},
	}
	v := &view{format: formatCurator, path: "/services/orders", where: "zookeeper at 127.0.0.1:2181", pub: upstreams.NewPublisher(zap.NewNop(), "/services/orders")}
	v.Receive(nodes)
	if got := v.pub.Load().Dials(); !slices.Equal(got, []string{"10.0.0.1:8080", "web-2.local:8080"}) {
		t.Errorf("dials %v", got)
	}
	v.metadata = map[string]string{"zone": "west"}
	v.Receive(nodes)
	_, err := v.pub.Load().Upstreams()
	for _, want := range []string{"none of the 4 nodes under /services/orders is a usable curator instance", "1 disabled or not UP", "1 without an IP address or host name", "2 not matching the metadata", `node "i4": "0.0.0.0" is not an address the gateway can dial`} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v, want %q", err, want)
		}
	}
}

// FuzzDecode: nothing a node holds makes a format panic, and what decodes
// is a port Caddy can dial.
func FuzzDecode(f *testing.F) {
	f.Add(spring)
	f.Add(url.QueryEscape("tri://10.0.0.2:50051/org.example.Greeter?weight=1e400"))
	f.Fuzz(func(t *testing.T, s string) {
		for _, in := range []func() (upstreams.Record, error){
			func() (upstreams.Record, error) { return decodeCurator([]byte(s), false) },
			func() (upstreams.Record, error) { return decodeCurator([]byte(s), true) },
			func() (upstreams.Record, error) { return decodeDubbo(s, []string{"tri", "rest"}) },
			func() (upstreams.Record, error) { return decodeAPISIX([]byte(s)) },
		} {
			got, err := in()
			if err == nil && (got.Port < 1 || got.Port > 65535 || got.Weight < 0) {
				t.Fatalf("%q decoded to %+v", s, got)
			}
		}
	})
}
