package nacos

import (
	"encoding/json"
	"fmt"
	"math"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/nacos-group/nacos-sdk-go/v2/model"
	"github.com/nacos-group/nacos-sdk-go/v2/vo"
	"go.uber.org/zap"

	"github.com/caddy-discovery/caddy-discovery/upstreams"
	"github.com/caddy-discovery/caddy-discovery/upstreams/upstreamstest"
)

// The fuzz targets below run their seeds in every `go test`; to fuzz one:
//
//	go test -run '^$' -fuzz '^FuzzInstances$' -fuzztime 60s -parallel 1 ./nacos/

// sourceFields are the config fields of a nacos source; every error of its
// configuration starts with one of them (after the server's name, for a
// server of the nacos app).
var sourceFields = []string{
	"service", "namespace", "group", "clusters", "metadata", "protect_threshold", "server",
	"addresses", "grpc_port", "username", "password", "access_key", "secret_key", "tls", "ca_file",
	"insecure_skip_verify", "timeout", "reconcile_interval",
}

// namesField reports whether msg starts with a field to fix, after the
// prefix that names a server of the nacos app.
func namesField(msg string) bool {
	if rest, ok := strings.CutPrefix(msg, "nacos server "); ok {
		if _, after, ok := strings.Cut(rest, `": `); ok {
			msg = after
		}
	}
	return upstreamstest.NamesField(msg, sourceFields...)
}

// quiet sends what Caddy's default logger logs to a buffer that each call
// of the returned function empties, until the fuzz target ends: a source
// logs every service that has no instance, which a fuzzer makes thousands
// of times a second.
func quiet(f *testing.F) func() {
	_, orig, buf := caddy.BufferedLog()
	nop := zap.NewNop()
	f.Cleanup(func() { buf.FlushTo(nop); caddy.UnbufferDefaultLogger(orig) })
	return func() { buf.FlushTo(nop) }
}

// noClient is a test tuning whose creation of a naming client fails the
// fuzz target: the targets provision sources but never start them, so
// nothing may connect.
func noClient() *tuning {
	return testTuning(func(vo.NacosClientParam) (namingClient, error) {
		panic("a fuzz target created a naming client")
	})
}

// FuzzParseReference: a reference either parses into names Nacos accepts,
// which read back the same in the namespace/group/service form, or the
// error quotes it.
func FuzzParseReference(f *testing.F) {
	for _, s := range []string{
		"orders", "shop@@orders", "prod/shop/orders", "/shop/orders", "prod//orders", "//orders",
		"", "@@orders", "shop@@", "a/b", "a/b/c/d", "@orders", "shop@@a@@b", "prod/shop/a b", "prod/sh op/orders",
		"orders.v2:8080", "订单", "shop@@订单", "a\u00a0b", "a\x00b", strings.Repeat("s", 513), strings.Repeat("n", 129) + "/g/s",
		"{env.SVC}",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseReference(s)
		if err != nil {
			if msg := err.Error(); !strings.HasPrefix(msg, "empty service reference") && !strings.HasPrefix(msg, fmt.Sprintf("service reference %q", s)) {
				t.Fatalf("ParseReference(%q): error %q does not quote the reference", s, msg)
			}
			return
		}
		if err := validateService(r.Service); err != nil {
			t.Fatalf("ParseReference(%q) = %+v: %v", s, r, err)
		}
		if err := validateName("namespace", r.Namespace); err != nil {
			t.Fatalf("ParseReference(%q) = %+v: %v", s, r, err)
		}
		if err := validateName("group", r.Group); err != nil {
			t.Fatalf("ParseReference(%q) = %+v: %v", s, r, err)
		}
		long := r.Namespace + "/" + r.Group + "/" + r.Service
		if back, err := ParseReference(long); err != nil || back != r {
			t.Fatalf("ParseReference(%q) = %+v, written %q, which parses to %+v, %v", s, r, long, back, err)
		}
	})
}

// tokenize lexes a Caddyfile as caddyfile.NewTestDispenser does, without
// its log.Fatalf on text that does not lex (nor its {$ENV} expansion). Text
// without tokens is left out too: Caddy hands an unmarshaler at least the
// module's name.
func tokenize(in string) (*caddyfile.Dispenser, bool) {
	tokens, err := caddyfile.Tokenize([]byte(in), "Testfile")
	if err != nil || len(tokens) == 0 {
		return nil, false
	}
	return caddyfile.NewDispenser(tokens), true
}

// FuzzCaddyfile: `dynamic nacos` either adapts to JSON that loads back
// unchanged and passes the same checks at load time as at adapt time, or
// fails with an error that says where in the Caddyfile.
func FuzzCaddyfile(f *testing.F) {
	for _, s := range []string{
		"nacos orders",
		"nacos prod/shop/orders {\n clusters A B\n metadata version v2\n metadata zone a\n protect_threshold 0.5\n" +
			" addresses 10.0.0.1:8848 https://n:9000/ctx\n grpc_port 9999\n username u\n password {env.PW}\n" +
			" access_key ak\n secret_key sk\n tls\n ca_file /ca.pem\n insecure_skip_verify\n timeout 3s\n reconcile_interval 10s\n}",
		"nacos orders {\n namespace prod\n group shop\n server eu\n}",
		"nacos orders {\n protect_threshold 0\n reconcile_interval -1s\n}",
		"nacos orders {\n protect_threshold NaN\n}",
		"nacos orders {\n protect_threshold 1e-400\n}",
		"nacos orders {\n timeout -5s\n}",
		"nacos orders {\n timeout 1d\n}",
		"nacos orders {\n grpc_port 65535\n addresses 10.0.0.1:65000\n}",
		"nacos orders {\n addresses [::1]:8848 http://[fd00::1]/ctx/\n}",
		"nacos orders {\n metadata \"\" x\n}",
		"nacos orders {\n clusters \"\"\n}",
		"nacos {env.SVC} {\n namespace {env.NS}\n}",
		"nacos", "nacos a b", "nacos a/b", "nacos a {\n weight 3\n}", "nacos a {\n group x\n group y\n}",
		"nacos a {\n metadata k v\n metadata k w\n}", "nacos a {\n metadata k\n}", "nacos g@@a {\n group h\n}",
		"nacos a {\n server eu\n username u\n password p\n}", "nacos a {\n username u\n}", "nacos a {\n grpc_port 0\n}",
		"nacos a {\n password a b\n}",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		d, ok := tokenize(in)
		if !ok {
			return
		}
		u := new(NacosUpstreams)
		if err := u.UnmarshalCaddyfile(d); err != nil {
			if !strings.Contains(err.Error(), ", at Testfile:") {
				t.Fatalf("%q: error %q does not say where", in, err)
			}
			return
		}
		js, err := json.Marshal(u)
		if err != nil {
			t.Fatalf("%q: %+v does not marshal: %v", in, u, err)
		}
		back := new(NacosUpstreams)
		if err := caddy.StrictUnmarshalJSON(js, back); err != nil {
			t.Fatalf("%q adapts to %s, which does not load: %v", in, js, err)
		}
		if !reflect.DeepEqual(u, back) {
			t.Fatalf("%q adapts to %s, which loads as %+v, not %+v", in, js, back, u)
		}
		if strings.ContainsAny(in, "{}") {
			return // placeholders are checked once replaced
		}
		if _, _, err := back.parse(caddy.NewReplacer()); err != nil {
			t.Fatalf("%q passed at adapt time, fails at load time: %v", in, err)
		}
		if err := back.Server.Validate(); err != nil {
			t.Fatalf("%q passed at adapt time, fails at load time: %v", in, err)
		}
	})
}

// FuzzGlobalOption: the `nacos` global option either adapts to an app that
// provisions, or fails with an error that says where in the Caddyfile.
func FuzzGlobalOption(f *testing.F) {
	for _, s := range []string{
		"nacos {\n server default {\n addresses 10.0.0.1:8848\n namespace prod\n username u\n password p\n }\n server eu {\n addresses 10.1.0.1\n }\n}",
		"nacos {\n server a {\n addresses {env.A}\n password {env.P}\n username u\n timeout 2s\n reconcile_interval 1m\n }\n}",
		"nacos {\n server a {\n weight 1\n }\n}", "nacos {\n server a\n server a\n}", "nacos {\n cluster a\n}",
		"nacos {\n server a/b\n}", "nacos {\n server a {\n username u\n }\n}", "nacos {\n server a {\n addresses ftp://x\n }\n}",
		"nacos {\n server a {\n namespace a.b:c\n grpc_port 9848\n tls\n }\n}", "nacos x",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		d, ok := tokenize(in)
		if !ok {
			return
		}
		v, err := parseGlobalOption(d, nil)
		if err != nil {
			if !strings.Contains(err.Error(), ", at Testfile:") {
				t.Fatalf("%q: error %q does not say where", in, err)
			}
			return
		}
		app := new(App)
		if err := caddy.StrictUnmarshalJSON(v.(httpcaddyfile.App).Value, app); err != nil {
			t.Fatalf("%q adapts to %s, which does not load: %v", in, v.(httpcaddyfile.App).Value, err)
		}
		if err := app.Provision(caddy.Context{}); err != nil {
			t.Fatalf("%q passed at adapt time, fails at load time: %v", in, err)
		}
	})
}

// FuzzJSON: a nacos source's JSON (and the nacos app's) either loads and
// provisions without creating a naming client, with the same checks as at
// adapt time, or fails with an error that starts with the field to fix and
// never shows a password or secret key.
func FuzzJSON(f *testing.F) {
	for _, s := range [][2]string{
		{`{"service": "prod/SHOP/shop-api", "addresses": ["127.0.0.1:1"]}`, ``},
		{`{"service": "SHOP@@shop-api", "metadata": {"version": "v2"}, "clusters": ["hz"], "protect_threshold": 0.5}`, ``},
		{`{"service": "shop-api", "server": "prod"}`, `{"servers": {"prod": {"addresses": ["127.0.0.1:1"], "username": "u", "password": "{env.HOME}"}}}`},
		{`{"service": "shop-api", "server": "dev"}`, `{"servers": {"prod": {"addresses": ["127.0.0.1:1"]}}}`},
		{`{"service": "shop-api"}`, `{"servers": {"default": {"addresses": ["10.0.0.1"], "namespace": "prod", "timeout": "3s"}}}`},
		{`{"service": "shop-api", "timeout": "2s", "reconcile_interval": "-1s", "grpc_port": 9848}`, ``},
		{`{"service": "shop-api", "timeout": 1000000000, "reconcile_interval": 30000000000}`, ``},
		{`{"service": "shop-api", "timeout": "-1s"}`, ``},
		{`{"service": "shop-api", "timeout": "soon"}`, ``},
		{`{"service": "shop-api", "timeout": 1.5}`, ``},
		{`{"service": "shop-api", "grpc_port": 70000}`, ``},
		{`{"service": "shop-api", "grpc_port": "9848"}`, ``},
		{`{"service": "shop-api", "addresses": ["10.0.0.1:65000"]}`, ``},
		{`{"service": "shop-api", "addresses": ["http://u:s3cr3t-pw@10.0.0.1"]}`, ``},
		{`{"service": "shop-api", "addresses": ["[::1]:8848", "https://[fd00::1]:9000/ctx/"], "tls": true, "insecure_skip_verify": true}`, ``},
		{`{"service": ""}`, ``},
		{`{"service": "shop-api", "addresses": ["ftp://x"]}`, ``},
		{`{"service": "shop-api", "username": "u"}`, ``},
		{`{"service": "shop-api", "username": "u", "password": "s3cr3t-pw", "namespace": "a b"}`, ``},
		{`{"service": "shop-api", "access_key": "ak", "secret_key": "s3cr3t-sk", "grpc_port": -1}`, ``},
		{`{"service": "shop-api", "protect_threshold": 2}`, ``},
		{`{"service": "shop-api", "protect_threshold": -0}`, ``},
		{`{"service": "shop-api", "group_name": "x"}`, ``},
		{`{"service": "shop-api", "clusters": [""], "metadata": {"": "x"}}`, ``},
		{`{"service": "shop-api", "server": "prod", "addresses": ["10.0.0.1"]}`, `{"servers": {"prod": {}}}`},
		{`{"service": "shop-api"}`, `{"servers": {"a b": {}}}`},
		{`{"service": "shop-api"}`, `{"servers": {"a": null}}`},
	} {
		f.Add([]byte(s[0]), []byte(s[1]))
	}
	tn := noClient()
	flush := quiet(f)
	f.Fuzz(func(t *testing.T, source, appJSON []byte) {
		defer flush()
		all := string(source) + string(appJSON)
		if strings.Contains(all, "file.") || strings.Contains(all, "ca_file") {
			return // {file.*} placeholders and ca_file read files, which may block
		}
		u := new(NacosUpstreams)
		if err := caddy.StrictUnmarshalJSON(source, u); err != nil {
			return // encoding/json's own errors, with the Go field path
		}
		u.tuning = tn
		app := new(App)
		if caddy.StrictUnmarshalJSON(appJSON, app) != nil {
			app = new(App)
		}
		check := func(err error) {
			t.Helper()
			if !namesField(err.Error()) {
				t.Fatalf("%s %s: error %q does not start with the field to fix", source, appJSON, err)
			}
			for _, secret := range []string{u.Password, u.SecretKey} {
				if len(secret) >= 6 && strings.Count(string(source), secret) == 1 && strings.Contains(err.Error(), secret) {
					t.Fatalf("%s: error %q shows a secret", source, err)
				}
			}
		}
		_, _, err := u.parse(caddy.NewReplacer())
		if !strings.ContainsAny(string(source), "{}\\") {
			loadErr := err
			if loadErr == nil {
				loadErr = u.Server.Validate()
			}
			if adaptErr := u.Validate(); fmt.Sprint(loadErr) != fmt.Sprint(adaptErr) {
				t.Fatalf("%s: adapt time: %v; load time: %v", source, adaptErr, loadErr)
			}
		}
		if err != nil {
			check(err)
			return
		}
		if err := app.Provision(caddy.Context{}); err != nil {
			if !strings.HasPrefix(err.Error(), "servers: ") {
				t.Fatalf("%s: app error %q does not start with servers:", appJSON, err)
			}
			app = new(App)
		}
		if err := u.provision(caddy.Log(), app); err != nil {
			check(err)
			return
		}
		defer func() {
			if err := u.Cleanup(); err != nil {
				t.Fatal(err)
			}
		}()
		if _, err := u.GetUpstreams(nil); err == nil {
			t.Fatalf("%s: a source that never started has upstreams", source)
		}
	})
}

// fuzzIPs splits a fuzzed string into instance IPs, with a few to fall back on.
func fuzzIPs(s string) []string {
	ips := strings.Split(s, ",")
	return append(ips, "10.0.0.1", "fd00::1", "[fd00::2]", "0.0.0.0", "::", "::ffff:10.0.0.2", "fe80::1%eth0", "")
}

// FuzzInstances builds two instance lists from fuzzed primitives (IPs from a
// comma-separated string, cluster names and metadata pairs from others,
// everything else from bytes), hands them to a provisioned source's
// subscription callback as the SDK does, and reads GetUpstreams after each.
// Nothing a server sends may crash the source or make it dial a broken
// address: every upstream is a valid, specified, zone-free IP with a port
// from 1 to 65535, with a published weight that is finite and above 0; and
// a source without upstreams says why, naming the service.
func FuzzInstances(f *testing.F) {
	for _, s := range []struct {
		ips, clusters, meta string
		data                []byte
	}{
		{"10.0.0.1,10.0.0.2", "", "", []byte{0, 0, 0, 2, 2, 1, 1, 1, 2, 1, 1, 1, 1}},
		{"10.0.0.1,[fd00::3],not-an-ip", "A,B", "version=v2", []byte{1, 2, 1, 4, 0, 1, 3, 1, 1, 1, 2, 2, 1, 4, 5, 6, 7, 1, 0, 1}},
		{"10.0.0.1", "", "", []byte{3, 9, 2, 3, 0, 5, 8, 1, 1, 1, 0, 6, 9, 1, 1, 1, 0, 7, 10, 1, 1}},
		{"10.0.0.1,10.0.0.2,10.0.0.3", "DEFAULT", "zone=a,zone=b", []byte{2, 1, 0, 3, 0, 1, 3, 1, 1, 1, 1, 1, 1, 1, 1, 2, 1, 1, 1, 2, 1, 0, 1, 1}},
	} {
		f.Add(s.ips, s.clusters, s.meta, s.data)
	}
	tn := noClient()
	flush := quiet(f)
	f.Fuzz(func(t *testing.T, ipList, clusterList, metaList string, data []byte) {
		defer flush()
		checkInstances(t, tn, ipList, clusterList, metaList, data)
	})
}

// checkInstances is FuzzInstances' body: data decides the source's filter
// and protect_threshold, then two instance lists; the source runs on tn.
func checkInstances(t *testing.T, tn *tuning, ipList, clusterList, metaList string, data []byte) {
	st := upstreamstest.Stream(data)
	ips := fuzzIPs(ipList)
	// Strings of a config, and of the SDK's instances, come from JSON,
	// whose decoder makes them valid UTF-8.
	clusterList, metaList = strings.ToValidUTF8(clusterList, "\uFFFD"), strings.ToValidUTF8(metaList, "\uFFFD")
	clusters := append(strings.Split(clusterList, ","), "DEFAULT", "")
	var pairs [][2]string
	for kv := range strings.SplitSeq(metaList, ",") {
		k, v, _ := strings.Cut(kv, "=")
		pairs = append(pairs, [2]string{k, v})
	}

	u := &NacosUpstreams{Service: "shop@@orders", ProtectThreshold: []float64{0, 0, 0.5, 1}[st.Intn(4)], tuning: tn}
	if st.Bool() && clusterList != "" {
		u.Clusters = strings.Split(clusterList, ",")
	}
	if st.Bool() && len(pairs) > 0 {
		p := pairs[st.Intn(len(pairs))]
		u.Metadata = map[string]string{p[0]: p[1]}
	}
	if _, _, err := u.parse(caddy.NewReplacer()); err != nil {
		u.Clusters, u.Metadata = nil, nil // a filter no config can have
	}
	app := new(App)
	if err := u.provision(caddy.Log(), app); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := u.Cleanup(); err != nil {
			t.Fatal(err)
		}
	}()
	list := func() []model.Instance {
		var l []model.Instance
		for range st.Intn(8) {
			in := model.Instance{
				Ip:          ips[st.Intn(len(ips))],
				Port:        uint64(st.Int64()),
				Weight:      st.Float64(),
				Healthy:     st.Intn(4) > 0,
				Enable:      st.Intn(4) > 0,
				ClusterName: clusters[st.Intn(len(clusters))],
			}
			for range st.Intn(3) {
				if in.Metadata == nil {
					in.Metadata = map[string]string{}
				}
				p := pairs[st.Intn(len(pairs))]
				in.Metadata[p[0]] = p[1]
			}
			l = append(l, in)
		}
		return l
	}
	for range 2 {
		l := list()
		ts, skip := u.view.filter.targets(l)
		if n := len(ts) + skip.unhealthy + skip.disabled + skip.noWeight + skip.cluster + skip.metadata + skip.badAddr; n != skip.total || skip.total != len(l) {
			t.Fatalf("%d targets and %+v skipped of %d instances", len(ts), skip, len(l))
		}
		for _, tg := range ts {
			if err := upstreamstest.CheckDial(tg.Dial()); err != nil || !(tg.Weight > 0) || math.IsInf(tg.Weight, 0) {
				t.Fatalf("target %+v from %+v: %v", tg, l, err)
			}
		}

		u.subscription.param.SubscribeCallback(l, nil) // as the SDK calls back
		if len(l) == 0 {
			u.subscription.diagnose() // as the subscription's goroutine does then
		}
		ups, err := u.GetUpstreams(nil)
		if err != nil {
			if len(ups) > 0 {
				t.Fatalf("upstreams with error %v", err)
			}
			if !strings.Contains(err.Error(), "shop@@orders") {
				t.Fatalf("error %q does not name the service", err)
			}
			continue
		}
		if err := upstreamstest.CheckUpstreams(ups); err != nil {
			t.Fatalf("from %+v: %v", l, err)
		}
		for _, up := range ups {
			w := upstreams.LookupWeight(up.Dial)
			if w == nil {
				t.Fatalf("no weight published for %s", up.Dial)
			}
			if v, ok := w.Load(); !ok || !(v > 0) || math.IsInf(v, 0) {
				t.Fatalf("weight of %s published as %v, %v", up.Dial, v, ok)
			}
		}
		if u.ProtectThreshold == 0 {
			want := upstreams.NewSnapshot(ts, nil).Dials()
			got := make([]string, len(ups))
			for i, up := range ups {
				got[i] = up.Dial
			}
			if !slices.Equal(got, want) {
				t.Fatalf("upstreams %v, want the filtered list %v", got, want)
			}
		}
	}
}
