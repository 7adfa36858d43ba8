package etcd

import (
	"slices"
	"strings"
	"testing"

	"go.uber.org/zap"

	"github.com/caddy-discovery/caddy-discovery/upstreams"
)

func TestDecode(t *testing.T) {
	for _, tc := range []struct {
		format, value string
		fields        JSONFields
		want          upstreams.Record
		wantErr       string
	}{
		{formatEtcd, `{"Op":0,"Addr":"10.0.0.1:8080","Metadata":{"zone":"a","weight":3,"canary":true}}`, JSONFields{},
			upstreams.Record{Host: "10.0.0.1", Port: 8080, Weight: 3, Metadata: map[string]string{"zone": "a", "weight": "3", "canary": "true"}}, ""},
		{formatEtcd, `{"Op":0,"Addr":"[fd00::1]:8080"}`, JSONFields{}, upstreams.Record{Host: "fd00::1", Port: 8080}, ""},
		{formatEtcd, `{"Op":1,"Addr":"10.0.0.1:8080"}`, JSONFields{}, upstreams.Record{}, "Op is 1"},
		{formatEtcd, `10.0.0.1:8080`, JSONFields{}, upstreams.Record{}, `not an etcd naming endpoint {"Op":0,"Addr":"ip:port"}; the value starts "10.0.0.1:8080"`},
		{formatEtcd, `{"Op":0,"Addr":"10.0.0.1"}`, JSONFields{}, upstreams.Record{}, `Addr: "10.0.0.1" is not ip:port`},
		{formatKratos, `{"id":"1","name":"shop","version":"v2","metadata":{"weight":"5"},"endpoints":["grpc://10.0.0.1:9000","http://10.0.0.1:8000?isSecure=false"]}`, JSONFields{},
			upstreams.Record{Host: "10.0.0.1", Port: 8000, Weight: 5, Metadata: map[string]string{"weight": "5", "version": "v2"}}, ""},
		{formatKratos, `{"id":"1","endpoints":["grpc://10.0.0.1:9000"]}`, JSONFields{}, upstreams.Record{}, "no http:// endpoint"},
		{formatGoZero, "10.0.0.2:8080\n", JSONFields{}, upstreams.Record{Host: "10.0.0.2", Port: 8080}, ""},
		{formatGoMicro, `{"name":"greeter","version":"1.2","metadata":{"team":"a","zone":"x"},"endpoints":[],"nodes":[{"id":"greeter-1","address":"10.0.0.4:8080","metadata":{"zone":"east","transport":"http"}}]}`, JSONFields{},
			upstreams.Record{Host: "10.0.0.4", Port: 8080, Metadata: map[string]string{"version": "1.2", "team": "a", "zone": "east", "transport": "http"}}, ""},
		{formatGoMicro, `{"name":"greeter","nodes":[]}`, JSONFields{}, upstreams.Record{}, "holds 0 nodes"},
		{formatGoMicro, `{"name":"greeter","nodes":[{"id":"1","address":"10.0.0.4"}]}`, JSONFields{}, upstreams.Record{}, `address: "10.0.0.4" is not ip:port`},
		{formatGoMicro, `{"Op":0,"Addr":"10.0.0.1:8080"}`, JSONFields{}, upstreams.Record{}, "not a go-micro Service"},
		{formatGoZero, `{"Op":0,"Addr":"10.0.0.1:8080"}`, JSONFields{}, upstreams.Record{}, "is not ip:port"},
		{formatJSON, `{"address":"10.0.0.3","port":8080,"weight":2,"metadata":{"v":"2"}}`, JSONFields{},
			upstreams.Record{Host: "10.0.0.3", Port: 8080, Weight: 2, Metadata: map[string]string{"v": "2"}}, ""},
		{formatJSON, `{"host":"10.0.0.3:81","w":"4"}`, JSONFields{Address: "host", Weight: "w"}, upstreams.Record{Host: "10.0.0.3", Port: 81, Weight: 4}, ""},
		{formatJSON, `{"address":"10.0.0.3","port":"80"}`, JSONFields{}, upstreams.Record{Host: "10.0.0.3", Port: 80}, ""},
		{formatJSON, `{"address":"10.0.0.3"}`, JSONFields{}, upstreams.Record{}, `"10.0.0.3" has no port, and there is no field "port"`},
		{formatJSON, `{"address":"10.0.0.3","port":80.5}`, JSONFields{}, upstreams.Record{}, "port: the port is not a number"},
		{formatJSON, `{"ip":"10.0.0.3"}`, JSONFields{}, upstreams.Record{}, `no string field "address"`},
		{formatJSON, `[1,2]`, JSONFields{}, upstreams.Record{}, "not a JSON object"},
	} {
		got, err := decode(tc.format, tc.fields, []byte(tc.value))
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%s %s: error %v, want %q", tc.format, tc.value, err, tc.wantErr)
			}
			continue
		}
		if err != nil || got.Host != tc.want.Host || got.Port != tc.want.Port || got.Weight != tc.want.Weight || !sameMap(got.Metadata, tc.want.Metadata) {
			t.Errorf("%s %s = %+v, %v; want %+v", tc.format, tc.value, got, err, tc.want)
		}
	}
}

func sameMap(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// TestViewTargets: a view decodes the keys in its format, selects by
// metadata, serves IP addresses and host names (never looked up here),
// skips what Caddy cannot dial,
// and says why when nothing is left.
func TestViewTargets(t *testing.T) {
	keys := []kv{
		{"svc/1", []byte(`{"Op":0,"Addr":"10.0.0.2:80","Metadata":{"zone":"a"}}`)},
		{"svc/2", []byte(`{"Op":0,"Addr":"10.0.0.1:80","Metadata":{"zone":"b","weight":4}}`)},
		{"svc/3", []byte(`{"Op":0,"Addr":"web-3.local:80"}`)},
		{"svc/4", []byte(`garbage`)},
		{"svc/5", []byte(`{"Op":0,"Addr":"0.0.0.0:80"}`)},
	}
	v := &view{format: formatEtcd, prefix: "svc/", where: "etcd at 127.0.0.1:2379", pub: upstreams.NewPublisher(zap.NewNop(), "svc/")}
	v.Receive(keys)
	if got := v.pub.Load().Dials(); !slices.Equal(got, []string{"10.0.0.1:80", "10.0.0.2:80", "web-3.local:80"}) {
		t.Errorf("dials %v", got)
	}
	if w := v.pub.Load().Weight("10.0.0.1:80"); w != 4 {
		t.Errorf("weight %v, want 4", w)
	}
	v.metadata = map[string]string{"zone": "c"}
	v.Receive(keys)
	_, err := v.pub.Load().Upstreams()
	for _, want := range []string{"none of the 5 keys under \"svc/\" is a usable etcd instance", "1 not in the format", "1 without an IP address or host name", "3 not matching the metadata", `key "svc/4": not an etcd naming endpoint`} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v, want %q", err, want)
		}
	}
	v.Receive(nil)
	if _, err := v.pub.Load().Upstreams(); err == nil || !strings.Contains(err.Error(), `no keys under "svc/"`) {
		t.Errorf("no keys: %v", err)
	}
}

// FuzzDecode: nothing a key holds makes a format panic, and what decodes is
// a port Caddy can dial.
func FuzzDecode(f *testing.F) {
	for _, s := range []string{
		`{"Op":0,"Addr":"10.0.0.1:8080","Metadata":{"weight":3}}`,
		`{"id":"1","endpoints":["http://10.0.0.1:8000?isSecure=false"],"metadata":{"weight":"x"}}`,
		"10.0.0.2:8080",
		`{"address":"10.0.0.3","port":8080,"weight":1e308,"metadata":{"a":[1]}}`,
		`{"Op":0,"Addr":"[::1%eth0]:1"}`,
		`{"name":"greeter","version":"1","nodes":[{"id":"1","address":"10.0.0.4:8080","metadata":{"a":"b"}}]}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, value []byte) {
		for _, format := range formats {
			in, err := decode(format, JSONFields{}, value)
			if err == nil && (in.Port < 1 || in.Port > 65535 || in.Weight < 0) {
				t.Fatalf("%s %q decoded to %+v", format, value, in)
			}
		}
	})
}
