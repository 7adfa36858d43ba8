package nacos

import (
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/nacos-group/nacos-sdk-go/v2/model"
	"github.com/nacos-group/nacos-sdk-go/v2/vo"
	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/caddy-discovery/caddy-discovery/upstreams"
	"github.com/caddy-discovery/caddy-discovery/upstreams/upstreamstest"
)

func TestMain(m *testing.M) {
	// The SDK's UDP push receiver (HTTP proxy) outlives CloseClient: an SDK
	// leak, once per real client, and only TestCredentialsReachLogin makes one.
	goleak.VerifyTestMain(m, goleak.IgnoreAnyFunction("github.com/nacos-group/nacos-sdk-go/v2/clients/naming_client/naming_http.(*PushReceiver).handleClient"))
}

// testTuning is the tuning that tests inject through NacosUpstreams.tuning:
// production's, with shorter timings and, unless nil, newNaming instead of
// the SDK's client. Sources that share a pooled client get the tuning of the
// one that created it, so each test gives all its sources one tuning, and
// its sources either connect differently from other tests' or are cleaned
// up before the test ends.
func testTuning(newNaming func(vo.NacosClientParam) (namingClient, error)) *tuning {
	tn := defaultTuning()
	tn.healthInterval = 20 * time.Millisecond
	tn.retryMin, tn.retryMax = 10*time.Millisecond, 50*time.Millisecond
	tn.connRetry = 5 * time.Millisecond
	if newNaming != nil {
		tn.newNaming = func(p vo.NacosClientParam, _ *sync.Mutex) (namingClient, error) { return newNaming(p) }
	}
	return tn
}

func TestParseReference(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Reference
		err  string
	}{
		{in: "orders", want: Reference{Service: "orders"}},
		{in: "shop@@orders", want: Reference{Group: "shop", Service: "orders"}},
		{in: "prod/shop/orders", want: Reference{Namespace: "prod", Group: "shop", Service: "orders"}},
		{in: "/shop/orders", want: Reference{Group: "shop", Service: "orders"}},
		{in: "prod//orders", want: Reference{Namespace: "prod", Service: "orders"}},
		{in: "providers:com.example.Api:1.0:", want: Reference{Service: "providers:com.example.Api:1.0:"}},
		{in: "", err: "empty service reference"},
		{in: "@@orders", err: "empty group"},
		{in: "shop@@", err: "empty service name"},
		{in: "a/b", err: "expected service"},
		{in: "a/b/c/d", err: "expected service"},
		{in: "prod/shop/", err: "empty service name"},
		{in: "or ders", err: "contains"},
		{in: "a@@b@@c", err: "must not contain '@@'"},
		{in: "@x", err: "must not start with '@'"},
		{in: "pr od/g/s", err: "invalid namespace"},
		{in: "ns/gr\x00p/s", err: "invalid group"},
	} {
		got, err := ParseReference(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ParseReference(%q) err = %v, want %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("ParseReference(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
		}
	}
}

func inst(ip string, port uint64, mod ...func(*model.Instance)) model.Instance {
	in := model.Instance{Ip: ip, Port: port, Weight: 1, Healthy: true, Enable: true, ClusterName: "DEFAULT"}
	for _, m := range mod {
		m(&in)
	}
	return in
}

// TestFilterTargets proves our own filter (filter.targets), the layer under
// the server: whatever instance list a server pushes, only healthy, enabled
// instances with a finite weight > 0, a valid IP and port, in a selected
// cluster and matching the metadata become targets, and every one left out
// is counted under its reason (the counts make the "no usable instance"
// error). The integration tests cannot prove this layer: Polaris, their
// server, leaves disabled instances out of its pushes, so "a disabled
// instance gets no traffic" passes there without this filter doing
// anything, and no real server sends NaN weights or unparsable addresses.
// So each case hands the filter a list built here.
func TestFilterTargets(t *testing.T) {
	meta := func(kv ...string) func(*model.Instance) {
		return func(i *model.Instance) {
			i.Metadata = map[string]string{}
			for j := 0; j+1 < len(kv); j += 2 {
				i.Metadata[kv[j]] = kv[j+1]
			}
		}
	}
	weight := func(w float64) func(*model.Instance) { return func(i *model.Instance) { i.Weight = w } }
	cluster := func(c string) func(*model.Instance) { return func(i *model.Instance) { i.ClusterName = c } }
	unhealthy := func(i *model.Instance) { i.Healthy = false }
	disabled := func(i *model.Instance) { i.Enable = false }
	// mixed is every kind at once, as one push.
	mixed := []model.Instance{
		inst("10.0.0.2", 80, weight(3)),
		inst("10.0.0.1", 80),
		inst("2001:db8::1", 8080, cluster("B")),
		inst("10.0.0.3", 80, unhealthy),
		inst("10.0.0.4", 80, disabled),
		inst("10.0.0.5", 80, weight(0)),
		inst("10.0.0.6", 80, weight(math.NaN())),
		inst("10.0.0.7", 80, weight(math.Inf(1))),
		inst("not-an-ip", 80),
		inst("", 80),
		inst("10.0.0.8", 0),
		inst("10.0.0.9", 70000),
		inst("[2001:db8::2]", 81, meta("version", "v2")),
		inst("::ffff:10.0.0.10", 82, meta("version", "v2", "zone", "a")),
	}
	for _, tc := range []struct {
		name   string
		filter filter
		list   []model.Instance
		want   []string // dial/weight, sorted
		skip   skipped
	}{
		{name: "empty", list: nil, want: nil, skip: skipped{}},
		{
			name: "disabled",
			list: []model.Instance{inst("10.0.0.1", 80), inst("10.0.0.2", 80, disabled), inst("10.0.0.3", 80, disabled, weight(2))},
			want: []string{"10.0.0.1:80/1"},
			skip: skipped{total: 3, disabled: 2, marked: 3},
		},
		{
			name: "unhealthy, counted once when also disabled",
			list: []model.Instance{inst("10.0.0.1", 80, unhealthy), inst("10.0.0.2", 80, unhealthy, disabled), inst("10.0.0.3", 80)},
			want: []string{"10.0.0.3:80/1"},
			skip: skipped{total: 3, unhealthy: 2, marked: 3},
		},
		{
			name: "weight 0, negative, NaN and infinite",
			list: []model.Instance{
				inst("10.0.0.1", 80, weight(0)), inst("10.0.0.2", 80, weight(-1)), inst("10.0.0.3", 80, weight(math.NaN())),
				inst("10.0.0.4", 80, weight(math.Inf(1))), inst("10.0.0.5", 80, weight(math.Inf(-1))),
				inst("10.0.0.6", 80, weight(0.5)), inst("10.0.0.7", 80, weight(100)),
			},
			want: []string{"10.0.0.6:80/0.5", "10.0.0.7:80/100"},
			skip: skipped{total: 7, noWeight: 5, marked: 7},
		},
		{
			name: "bad IP or port",
			list: []model.Instance{
				inst("not-an-ip", 80), inst("", 80), inst("backend.internal", 80), inst("10.0.0.256", 80), inst("10.0.0.1:80", 80),
				inst("10.0.0.1", 0), inst("10.0.0.2", 65536), inst("10.0.0.3", math.MaxUint64), inst("10.0.0.4", 65535),
			},
			want: []string{"10.0.0.4:65535/1"},
			skip: skipped{total: 9, badAddr: 8, marked: 9},
		},
		{
			name: "IPv4-mapped IPv6 is dialed as IPv4; IPv6 plain or bracketed",
			list: []model.Instance{
				inst("::ffff:10.0.0.1", 80), inst("[::ffff:10.0.0.2]", 81), inst("2001:db8::1", 82), inst("[2001:db8::2]", 83),
			},
			want: []string{"10.0.0.1:80/1", "10.0.0.2:81/1", "[2001:db8::1]:82/1", "[2001:db8::2]:83/1"},
			skip: skipped{total: 4, marked: 4},
		},
		{
			name:   "wrong cluster",
			filter: filter{clusters: []string{"A", "C"}},
			list:   []model.Instance{inst("10.0.0.1", 80, cluster("A")), inst("10.0.0.2", 80, cluster("B")), inst("10.0.0.3", 80), inst("10.0.0.4", 80, cluster("C"))},
			want:   []string{"10.0.0.1:80/1", "10.0.0.4:80/1"},
			skip:   skipped{total: 4, cluster: 2, marked: 4},
		},
		{
			name:   "metadata mismatch: missing key, other value, empty value",
			filter: filter{metadata: map[string]string{"version": "v2", "zone": "a"}},
			list: []model.Instance{
				inst("10.0.0.1", 80, meta("version", "v2", "zone", "a", "extra", "x")), inst("10.0.0.2", 80, meta("version", "v2")),
				inst("10.0.0.3", 80, meta("version", "v1", "zone", "a")), inst("10.0.0.4", 80, meta("version", "v2", "zone", "")),
				inst("10.0.0.5", 80),
			},
			want: []string{"10.0.0.1:80/1"},
			skip: skipped{total: 5, metadata: 4, marked: 1},
		},
		{
			name:   "metadata with an empty value requires the key",
			filter: filter{metadata: map[string]string{"canary": ""}},
			list:   []model.Instance{inst("10.0.0.1", 80, meta("canary", "")), inst("10.0.0.2", 80)},
			want:   []string{"10.0.0.1:80/1"},
			skip:   skipped{total: 2, metadata: 1, marked: 1},
		},
		{
			name: "mixed, no filter",
			list: mixed,
			want: []string{"10.0.0.10:82/1", "10.0.0.1:80/1", "10.0.0.2:80/3", "[2001:db8::1]:8080/1", "[2001:db8::2]:81/1"},
			skip: skipped{total: 14, unhealthy: 1, disabled: 1, noWeight: 3, badAddr: 4, marked: 14},
		},
		{
			name:   "mixed, cluster B",
			filter: filter{clusters: []string{"B"}},
			list:   mixed,
			want:   []string{"[2001:db8::1]:8080/1"},
			skip:   skipped{total: 14, unhealthy: 1, disabled: 1, noWeight: 3, cluster: 8, marked: 14},
		},
		{
			name:   "mixed, metadata version=v2",
			filter: filter{metadata: map[string]string{"version": "v2"}},
			list:   mixed,
			want:   []string{"10.0.0.10:82/1", "[2001:db8::2]:81/1"},
			skip:   skipped{total: 14, unhealthy: 1, disabled: 1, noWeight: 3, metadata: 7, marked: 2},
		},
		{
			name:   "mixed, metadata version=v2 and zone=a",
			filter: filter{metadata: map[string]string{"version": "v2", "zone": "a"}},
			list:   mixed,
			want:   []string{"10.0.0.10:82/1"},
			skip:   skipped{total: 14, unhealthy: 1, disabled: 1, noWeight: 3, metadata: 8, marked: 1},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ts, skip := tc.filter.targets(tc.list)
			var got []string
			for _, tg := range ts {
				got = append(got, fmt.Sprintf("%s/%g", tg.Dial(), tg.Weight))
			}
			slices.Sort(got)
			if !slices.Equal(got, tc.want) {
				t.Errorf("targets = %v, want %v", got, tc.want)
			}
			if skip != tc.skip {
				t.Errorf("skipped = %#v, want %#v", skip, tc.skip)
			}
			if n := len(ts) + skip.unhealthy + skip.disabled + skip.noWeight + skip.cluster + skip.metadata + skip.badAddr; n != skip.total {
				t.Errorf("%d targets and skipped of %d instances: each instance must be counted once", n, skip.total)
			}
		})
	}
	// nothing a server sends can crash the filter
	_, _ = filter{metadata: map[string]string{"a": "b"}}.targets([]model.Instance{{}, {Ip: "1.2.3.4", Port: math.MaxUint64, Weight: -1}})
}

func TestServerValidateAndParam(t *testing.T) {
	for _, tc := range []struct {
		srv Server
		err string
	}{
		{srv: Server{Addresses: []string{"10.0.0.1:8848", "nacos.internal", "https://[::1]:443/ctx/", "{env.X}"}}},
		{srv: Server{Addresses: []string{"ftp://x"}}, err: "scheme must be http or https"},
		{srv: Server{Addresses: []string{"http://u:p@x"}}, err: "only scheme, host, port and path"},
		{srv: Server{Addresses: []string{"x:99999"}}, err: "not a number in 1-65535"},
		{srv: Server{Addresses: []string{"x/y"}}, err: "neither host:port nor a URL"},
		{srv: Server{Username: "u"}, err: "username and password go together"},
		{srv: Server{AccessKey: "a"}, err: "access_key and secret_key go together"},
		{srv: Server{GRPCPort: 70000}, err: "grpc_port"},
		{srv: Server{Namespace: "a b"}, err: "namespace"},
	} {
		err := tc.srv.Validate()
		if tc.err == "" && err != nil || tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("Validate(%+v) = %v, want %q", tc.srv, err, tc.err)
		}
	}

	srv := Server{
		Addresses: []string{"10.0.0.1", "https://nacos.example:9000/ctx"}, Username: "u", Password: "s3cret",
		AccessKey: "ak", SecretKey: "sk", Timeout: caddy.Duration(2 * time.Second),
	}
	p, err := srv.clientParam("prod")
	if err != nil {
		t.Fatal(err)
	}
	cc := p.ClientConfig
	if p.ServerConfigs[0].Port != 8848 || p.ServerConfigs[0].GrpcPort != 9848 || p.ServerConfigs[0].ContextPath != "/nacos" {
		t.Errorf("default port/grpc/context: %+v", p.ServerConfigs[0])
	}
	if sc := p.ServerConfigs[1]; sc.Port != 9000 || sc.GrpcPort != 10000 || sc.ContextPath != "/ctx" || sc.Scheme != "https" {
		t.Errorf("URL address: %+v", sc)
	}
	if !cc.TLSCfg.Enable || !cc.TLSCfg.Appointed || cc.TLSCfg.TrustAll {
		t.Errorf("an https address must enable verified TLS, appointed (not from env): %+v", cc.TLSCfg)
	}
	if cc.NamespaceId != "prod" || cc.Username != "u" || cc.Password != "s3cret" || cc.AccessKey != "ak" || cc.SecretKey != "sk" || cc.TimeoutMs != 2000 {
		t.Errorf("client config: %+v", cc)
	}
	if !cc.NotLoadCacheAtStart || !cc.UpdateCacheWhenEmpty {
		t.Error("NotLoadCacheAtStart and UpdateCacheWhenEmpty must be set")
	}
	dir := filepath.Join(caddy.AppDataDir(), "nacos")
	if !strings.HasPrefix(cc.CacheDir, dir) || !strings.HasPrefix(cc.LogDir, dir) {
		t.Errorf("cache %q and log %q dirs must be under %q", cc.CacheDir, cc.LogDir, dir)
	}
	srv.GRPCPort = 7777
	p2, _ := srv.clientParam("prod")
	if p2.ServerConfigs[0].GrpcPort != 7777 || p2.ServerConfigs[1].GrpcPort != 7777 {
		t.Errorf("grpc_port override: %+v", p2.ServerConfigs)
	}
	if fingerprint("", p) == fingerprint("", p2) {
		t.Error("different gRPC ports must not share a client")
	}
	p3, _ := srv.clientParam("prod")
	if fingerprint("", p2) != fingerprint("", p3) {
		t.Error("equal configs must share a client")
	}
	if strings.Contains(fingerprint("", p), "s3cret") {
		t.Error("fingerprint holds the password")
	}
	if _, err := (Server{CAFile: "/nonexistent/ca.pem"}).clientParam(""); err == nil || !strings.Contains(err.Error(), "ca_file") {
		t.Errorf("missing ca_file: %v", err)
	}
}

// TestSecretsStayOutOfErrors checks that a failing placeholder names the
// field, not its value, and that no error repeats a password.
func TestSecretsStayOutOfErrors(t *testing.T) {
	t.Setenv("NACOS_TEST_PW", "hunter2")
	app := &App{upstreams.ServerApp[Server]{Servers: map[string]*Server{"default": {Username: "u", Password: "{env.NACOS_TEST_PW}", Addresses: []string{"{env.NACOS_TEST_MISSING}"}}}}}
	_, _, err := servers.Resolve(app.Servers, "", Server{})
	if err == nil || !strings.Contains(err.Error(), "addresses") || strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("err = %v", err)
	}
	_, srv, err := servers.Resolve(map[string]*Server{"default": {Username: "u", Password: "{env.NACOS_TEST_PW}"}}, "", Server{})
	if err != nil || srv.Password != "hunter2" {
		t.Fatalf("placeholder not replaced: %v", err)
	}
}

func TestCaddyfile(t *testing.T) {
	for name, tc := range map[string]struct {
		in   string
		want func(u *NacosUpstreams) bool
		err  string
	}{
		"minimal": {in: `nacos orders`, want: func(u *NacosUpstreams) bool { return u.Service == "orders" }},
		"all": {
			in: `nacos prod/shop/orders {
				clusters A B
				metadata version v2
				metadata zone a
				protect_threshold 0.5
				addresses 10.0.0.1:8848 https://n:9000/ctx
				grpc_port 9999
				username u
				password {env.PW}
				access_key ak
				secret_key sk
				tls
				ca_file /ca.pem
				insecure_skip_verify
				timeout 3s
				reconcile_interval 10s
			}`,
			want: func(u *NacosUpstreams) bool {
				return u.Service == "prod/shop/orders" && slices.Equal(u.Clusters, []string{"A", "B"}) &&
					u.Metadata["version"] == "v2" && u.Metadata["zone"] == "a" && u.ProtectThreshold == 0.5 &&
					len(u.Addresses) == 2 && u.GRPCPort == 9999 && u.Username == "u" && u.Password == "{env.PW}" &&
					u.AccessKey == "ak" && u.SecretKey == "sk" && u.TLS && u.CAFile == "/ca.pem" && u.InsecureSkipVerify &&
					u.Timeout == caddy.Duration(3*time.Second) && u.ReconcileInterval == caddy.Duration(10*time.Second)
			},
		},
		"named server": {
			in: "nacos orders {\n namespace prod\n group shop\n server eu\n}",
			want: func(u *NacosUpstreams) bool {
				return u.Namespace == "prod" && u.Group == "shop" && u.ServerName == "eu"
			},
		},
		"no service":        {in: `nacos`, err: "needs a service"},
		"two services":      {in: `nacos a b`, err: "wrong argument count"},
		"bad reference":     {in: `nacos a/b`, err: "service: service reference"},
		"unknown option":    {in: "nacos a {\n weight 3\n}", err: "unrecognized nacos option 'weight'"},
		"duplicate":         {in: "nacos a {\n group x\n group y\n}", err: "group has already been specified"},
		"dup metadata":      {in: "nacos a {\n metadata k v\n metadata k w\n}", err: `metadata "k" has already been specified`},
		"metadata args":     {in: "nacos a {\n metadata k\n}", err: "metadata takes a key and a value"},
		"threshold":         {in: "nacos a {\n protect_threshold 2\n}", err: "protect_threshold takes a fraction"},
		"dup threshold 0":   {in: "nacos a {\n protect_threshold 0\n protect_threshold 0.5\n}", err: "protect_threshold has already been specified"},
		"group conflict":    {in: "nacos g@@a {\n group h\n}", err: "conflicts with group"},
		"server and inline": {in: "nacos a {\n server eu\n username u\n password p\n}", err: "is named and connection fields are set too"},
		"half credentials":  {in: "nacos a {\n username u\n}", err: "username and password go together"},
		"bad timeout":       {in: "nacos a {\n timeout soon\n}", err: "timeout"},
		"bad grpc port":     {in: "nacos a {\n grpc_port 0\n}", err: "grpc_port"},
		"placeholders":      {in: "nacos {env.SVC} {\n namespace {env.NS}\n}", want: func(u *NacosUpstreams) bool { return u.Service == "{env.SVC}" }},
	} {
		t.Run(name, func(t *testing.T) {
			u := new(NacosUpstreams)
			err := u.UnmarshalCaddyfile(caddyfile.NewTestDispenser(tc.in))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil || !tc.want(u) {
				t.Fatalf("err = %v, got %+v", err, u)
			}
		})
	}
}

func TestGlobalOption(t *testing.T) {
	d := caddyfile.NewTestDispenser(`nacos {
		server default {
			addresses 10.0.0.1:8848
			namespace prod
			username u
			password p
		}
		server eu {
			addresses 10.1.0.1
		}
	}`)
	v, err := parseGlobalOption(d, nil)
	if err != nil {
		t.Fatal(err)
	}
	js := fmt.Sprintf("%s", v)
	for _, want := range []string{`"default"`, `"namespace":"prod"`, `"eu"`} {
		if !strings.Contains(js, want) {
			t.Errorf("app JSON %s lacks %s", js, want)
		}
	}
	for in, want := range map[string]string{
		"nacos {\n server a {\n weight 1\n }\n}":          "unrecognized nacos server option",
		"nacos {\n server a\n server a\n}":                "has already been specified",
		"nacos {\n cluster a\n}":                          "unrecognized nacos global option",
		"nacos {\n server a/b\n}":                         "invalid server name",
		"nacos {\n server a {\n username u\n }\n}":        "username and password go together",
		"nacos {\n server a {\n addresses ftp://x\n }\n}": "scheme",
	} {
		if _, err := parseGlobalOption(caddyfile.NewTestDispenser(in), nil); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: err = %v, want %q", in, err, want)
		}
	}
}

// fakeNaming stands in for the SDK client, for the lifecycle logic only.
type fakeNaming struct {
	mu           sync.Mutex
	healthy      bool
	subs         map[*vo.SubscribeParam]int // Subscribe calls per param
	unsubs       map[*vo.SubscribeParam]int
	active       map[string]*vo.SubscribeParam
	closed       int
	subscribeErr error
}

func newFake() *fakeNaming {
	return &fakeNaming{healthy: true, subs: map[*vo.SubscribeParam]int{}, unsubs: map[*vo.SubscribeParam]int{}, active: map[string]*vo.SubscribeParam{}}
}

func (f *fakeNaming) Subscribe(p *vo.SubscribeParam) error {
	f.mu.Lock()
	f.subs[p]++
	err := f.subscribeErr
	if err == nil {
		f.active[p.GroupName+"@@"+p.ServiceName] = p
	}
	f.mu.Unlock()
	return err
}

func (f *fakeNaming) Unsubscribe(p *vo.SubscribeParam) error {
	f.mu.Lock()
	f.unsubs[p]++
	delete(f.active, p.GroupName+"@@"+p.ServiceName)
	f.mu.Unlock()
	return nil
}

func (f *fakeNaming) GetAllServicesInfo(vo.GetAllServiceInfoParam) (model.ServiceList, error) {
	return model.ServiceList{Count: 1, Doms: []string{"other"}}, nil
}

func (f *fakeNaming) ServerHealthy() bool { f.mu.Lock(); defer f.mu.Unlock(); return f.healthy }
func (f *fakeNaming) CloseClient()        { f.mu.Lock(); f.closed++; f.mu.Unlock() }

func (f *fakeNaming) push(key string, list ...model.Instance) bool {
	f.mu.Lock()
	p := f.active[key]
	f.mu.Unlock()
	if p == nil {
		return false
	}
	p.SubscribeCallback(list, nil)
	return true
}

// fakeTuning is a test tuning whose naming clients are all one fake; it
// counts the clients created.
func fakeTuning() (*tuning, *fakeNaming, *int) {
	fake, created := newFake(), new(int)
	var mu sync.Mutex
	tn := testTuning(func(vo.NacosClientParam) (namingClient, error) {
		mu.Lock()
		*created++
		mu.Unlock()
		return fake, nil
	})
	return tn, fake, created
}

// TestSharedLifecycle checks that sources share one client and one
// subscription across a "reload", filter the shared list themselves, and that
// the last Cleanup unsubscribes with the original parameter and closes the
// client.
func TestSharedLifecycle(t *testing.T) {
	tn, fake, created := fakeTuning()
	app1 := new(App)
	a := &NacosUpstreams{Service: "shop@@orders", tuning: tn}
	b := &NacosUpstreams{Service: "orders", Group: "shop", Metadata: map[string]string{"version": "v2"}, tuning: tn}
	for _, u := range []*NacosUpstreams{a, b} {
		if err := u.provision(caddy.Log(), app1); err != nil {
			t.Fatal(err)
		}
	}
	if a.subscription != b.subscription {
		t.Fatal("sources of the same service must share one subscription")
	}
	if _, err := a.GetUpstreams(nil); err == nil || !strings.Contains(err.Error(), "connecting") {
		t.Fatalf("before start: %v", err)
	}
	if err := app1.Start(); err != nil {
		t.Fatal(err)
	}
	upstreamstest.Eventually(t, 5*time.Second, func() error {
		if !fake.push("shop@@orders", inst("10.0.0.2", 80), inst("10.0.0.1", 80, func(i *model.Instance) { i.Metadata = map[string]string{"version": "v2"} })) {
			return errors.New("not subscribed yet")
		}
		return nil
	})
	upstreamstest.Eventually(t, 5*time.Second, upstreamstest.ExpectDials(a, "10.0.0.1:80", "10.0.0.2:80"))
	upstreamstest.Eventually(t, 5*time.Second, upstreamstest.ExpectDials(b, "10.0.0.1:80"))
	// the first connect coming up does not repeat the first Subscribe
	time.Sleep(5 * tn.healthInterval)
	fake.mu.Lock()
	n := fake.subs[a.subscription.param]
	fake.mu.Unlock()
	if n != 1 {
		t.Errorf("subscribed %d times on the first connect, want 1", n)
	}
	var dumped []string
	for _, e := range upstreams.Dump() {
		if e.Source == "nacos" {
			dumped = append(dumped, fmt.Sprintf("%s %d", e.Service, len(e.Upstreams)))
		}
	}
	if want := []string{"shop@@orders 2", "shop@@orders (metadata version=v2) 1"}; !slices.Equal(dumped, want) {
		t.Errorf("admin dump lists %q, want %q", dumped, want)
	}
	u1, _ := a.GetUpstreams(nil)
	u2, _ := a.GetUpstreams(nil)
	if u1[0] == u2[0] {
		t.Fatal("GetUpstreams must return fresh upstream values")
	}

	// "reload": a new config provisions and starts, then the old one is cleaned up
	app2 := new(App)
	c := &NacosUpstreams{Service: "orders", Group: "shop", tuning: tn}
	if err := c.provision(caddy.Log(), app2); err != nil {
		t.Fatal(err)
	}
	if err := app2.Start(); err != nil {
		t.Fatal(err)
	}
	upstreamstest.Eventually(t, 5*time.Second, upstreamstest.ExpectDials(c, "10.0.0.1:80", "10.0.0.2:80")) // served at once from the shared list
	w := a.subscription
	for _, u := range []*NacosUpstreams{a, b} {
		if err := u.Cleanup(); err != nil {
			t.Fatal(err)
		}
	}
	if w.Ctx.Err() != nil {
		t.Fatal("the subscription must survive the reload")
	}
	// an empty push is followed, and explained
	fake.push("shop@@orders")
	upstreamstest.Eventually(t, 5*time.Second, func() error {
		_, err := c.GetUpstreams(nil)
		if err == nil || !strings.Contains(err.Error(), `service "orders" is not registered in group "shop"`) {
			return fmt.Errorf("empty: %v", err)
		}
		return nil
	})
	if err := c.Cleanup(); err != nil {
		t.Fatal(err)
	}
	for _, e := range upstreams.Dump() {
		if e.Source == "nacos" {
			t.Errorf("admin dump still lists %s after Cleanup", e.Service)
		}
	}
	fake.mu.Lock()
	defer fake.mu.Unlock()
	if *created != 1 {
		t.Errorf("%d naming clients created, want 1", *created)
	}
	if len(fake.subs) != 1 {
		t.Errorf("%d distinct subscribe params, want 1 (the original is kept for Unsubscribe)", len(fake.subs))
	}
	for p, n := range fake.subs {
		if fake.unsubs[p] != n {
			t.Errorf("param subscribed %d times, unsubscribed %d times", n, fake.unsubs[p])
		}
	}
	if fake.closed != 1 {
		t.Errorf("CloseClient called %d times, want 1", fake.closed)
	}
}

// TestReconcileIntervalSharesClient checks that sources differing only in
// reconcile_interval share one naming client, and that a shared subscription
// re-reads at the smallest interval among its sources.
func TestReconcileIntervalSharesClient(t *testing.T) {
	tn, _, created := fakeTuning()
	app := new(App)
	fast := &NacosUpstreams{Service: "orders", Server: Server{Addresses: []string{"10.0.0.1"}, ReconcileInterval: caddy.Duration(time.Second)}, tuning: tn}
	off := &NacosUpstreams{Service: "orders", Server: Server{Addresses: []string{"10.0.0.1"}, ReconcileInterval: -1}, tuning: tn}
	other := &NacosUpstreams{Service: "billing", Server: Server{Addresses: []string{"10.0.0.1"}}, tuning: tn}
	for _, u := range []*NacosUpstreams{fast, off, other} {
		if err := u.provision(caddy.Log(), app); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = u.Cleanup() })
	}
	if fast.subscription.c != other.subscription.c {
		t.Fatal("sources with the same connection must share one client, whatever their reconcile_interval")
	}
	if got := fast.subscription.reconcileInterval(); got != time.Second {
		t.Errorf("shared subscription re-reads every %v, want the smallest, 1s", got)
	}
	if got := other.subscription.reconcileInterval(); got != defaultReconcileInterval {
		t.Errorf("default interval = %v", got)
	}
	_ = app.Start()
	<-fast.subscription.c.ready
	if *created != 1 {
		t.Errorf("%d naming clients created, want 1", *created)
	}
}

// TestReconcilePaced checks that a client's routine re-reads keep to its
// pace whatever the number of its subscriptions and their interval, while
// first Subscribes do not wait for it.
func TestReconcilePaced(t *testing.T) {
	tn, fake, _ := fakeTuning()
	tn.reconcileRate = 10
	app := new(App)
	const services = 20
	for i := range services {
		u := &NacosUpstreams{Service: fmt.Sprintf("s%d", i), Server: Server{Addresses: []string{"10.0.0.1"}, ReconcileInterval: caddy.Duration(10 * time.Millisecond)}, tuning: tn}
		if err := u.provision(caddy.Log(), app); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = u.Cleanup() })
	}
	calls := func() (params, n int) {
		fake.mu.Lock()
		defer fake.mu.Unlock()
		for _, c := range fake.subs {
			n += c
		}
		return len(fake.subs), n
	}
	start := time.Now()
	_ = app.Start()
	upstreamstest.Eventually(t, 5*time.Second, func() error {
		if p, _ := calls(); p < services {
			return fmt.Errorf("%d of %d services subscribed", p, services)
		}
		return nil
	})
	if d := time.Since(start); d > services*time.Second/10/2 {
		t.Errorf("first Subscribes took %v: they must not wait for the pace (one each 100 ms)", d)
	}
	_, before := calls()
	window := time.Now()
	time.Sleep(time.Second)
	_, after := calls()
	// Unpaced, 20 subscriptions re-reading every 10 ms would make some
	// 2,000 calls a second; the pace allows 10, and one more at each edge.
	if got, most := after-before, int(time.Since(window).Seconds()*10)+2; got > most || got < 3 {
		t.Errorf("%d re-reads in %v, want 3 to %d", got, time.Since(window), most)
	}
}

// TestReconcileAndOutage checks the re-read after reconnecting, that the last
// instances stay while the server is unreachable, and protect_threshold.
func TestReconcileAndOutage(t *testing.T) {
	tn, fake, _ := fakeTuning()
	tn.reconnectGrace = 200 * time.Millisecond
	app := new(App)
	plain := &NacosUpstreams{Service: "orders", tuning: tn}
	protected := &NacosUpstreams{Service: "orders", ProtectThreshold: 1, tuning: tn}
	for _, u := range []*NacosUpstreams{plain, protected} {
		if err := u.provision(caddy.Log(), app); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() { _ = plain.Cleanup(); _ = protected.Cleanup() })
	_ = app.Start()
	key := "DEFAULT_GROUP@@orders"
	upstreamstest.Eventually(t, 5*time.Second, func() error {
		if !fake.push(key, inst("10.0.0.1", 80), inst("10.0.0.2", 80)) {
			return errors.New("not subscribed")
		}
		return nil
	})
	upstreamstest.Eventually(t, 5*time.Second, upstreamstest.ExpectDials(plain, "10.0.0.1:80", "10.0.0.2:80"))

	fake.mu.Lock()
	fake.healthy = false
	fake.mu.Unlock()
	upstreamstest.Eventually(t, 5*time.Second, func() error {
		if plain.subscription.c.connProblem() == nil {
			return errors.New("outage not noticed")
		}
		return nil
	})
	// while unreachable, the last instances keep serving
	if err := upstreamstest.ExpectDials(plain, "10.0.0.1:80", "10.0.0.2:80")(); err != nil {
		t.Fatal(err)
	}
	// a push that would shrink the set during the outage: plain follows, protected holds
	fake.push(key, inst("10.0.0.1", 80))
	upstreamstest.Eventually(t, 5*time.Second, upstreamstest.ExpectDials(plain, "10.0.0.1:80"))
	upstreamstest.Eventually(t, 5*time.Second, upstreamstest.ExpectDials(protected, "10.0.0.1:80", "10.0.0.2:80"))
	fake.push(key)
	_, err := plain.GetUpstreams(nil)
	if err == nil || !strings.Contains(err.Error(), "cannot reach") {
		t.Fatalf("empty during outage: err = %v, want the connection problem", err)
	}

	// reconnecting re-subscribes at once
	fake.mu.Lock()
	before := 0
	for _, n := range fake.subs {
		before += n
	}
	fake.healthy = true
	fake.mu.Unlock()
	upstreamstest.Eventually(t, 5*time.Second, func() error {
		fake.mu.Lock()
		defer fake.mu.Unlock()
		n := 0
		for _, c := range fake.subs {
			n += c
		}
		if n <= before {
			return errors.New("no re-subscribe after reconnect")
		}
		return nil
	})
	fake.push(key, inst("10.0.0.3", 80))
	upstreamstest.Eventually(t, 5*time.Second, upstreamstest.ExpectDials(plain, "10.0.0.3:80"))
	// after the grace, protected follows too
	upstreamstest.Eventually(t, 5*time.Second, upstreamstest.ExpectDials(protected, "10.0.0.3:80"))
}

// blockingNaming's Unsubscribe waits for release, as the SDK's waits for the
// request timeout while the server is unreachable.
type blockingNaming struct {
	*fakeNaming
	release chan struct{}
}

func (b blockingNaming) Unsubscribe(p *vo.SubscribeParam) error {
	<-b.release
	return b.fakeNaming.Unsubscribe(p)
}

// TestDestructIsBounded checks that leaving subscriptions and closing the
// client never hold up a reload or shutdown for long, healthy or not, even
// when every Unsubscribe hangs, and that the client is still closed in the
// end.
func TestDestructIsBounded(t *testing.T) {
	fake, release := newFake(), make(chan struct{})
	tn := testTuning(func(vo.NacosClientParam) (namingClient, error) { return blockingNaming{fake, release}, nil })
	tn.closeTimeout = 200 * time.Millisecond
	var once sync.Once
	unblock := func() { once.Do(func() { close(release) }) }
	t.Cleanup(unblock)

	app := new(App)
	var us []*NacosUpstreams
	for i := range 6 {
		u := &NacosUpstreams{Service: fmt.Sprintf("svc%d", i), tuning: tn}
		if err := u.provision(caddy.Log(), app); err != nil {
			t.Fatal(err)
		}
		us = append(us, u)
	}
	_ = app.Start()
	upstreamstest.Eventually(t, 5*time.Second, func() error {
		fake.mu.Lock()
		defer fake.mu.Unlock()
		if len(fake.active) != len(us) {
			return fmt.Errorf("%d of %d subscribed", len(fake.active), len(us))
		}
		return nil
	})
	timed := func(what string, u *NacosUpstreams, bound time.Duration) error {
		t.Helper()
		start := time.Now()
		err := u.Cleanup()
		if d := time.Since(start); d > bound {
			t.Errorf("%s: Cleanup took %v, want under %v", what, d, bound)
		}
		return err
	}
	// healthy: the hanging Unsubscribe is not waited for
	if err := timed("healthy", us[0], 300*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	fake.mu.Lock()
	fake.healthy = false
	fake.mu.Unlock()
	upstreamstest.Eventually(t, 5*time.Second, func() error {
		if us[1].subscription.c.connProblem() == nil {
			return errors.New("outage not noticed")
		}
		return nil
	})
	// unhealthy: no wait at all, so many services stop at once
	start := time.Now()
	for _, u := range us[1:5] {
		if err := u.Cleanup(); err != nil {
			t.Fatal(err)
		}
	}
	if d := time.Since(start); d > 300*time.Millisecond {
		t.Errorf("unhealthy: 4 Cleanups took %v", d)
	}
	// the last one closes the client, bounded by closeTimeout in all
	if err := timed("last", us[5], tn.closeTimeout+300*time.Millisecond); err == nil || !strings.Contains(err.Error(), "abandoning") {
		t.Errorf("last Cleanup with hanging Unsubscribes: err = %v, want the client abandoned", err)
	}
	unblock()
	upstreamstest.Eventually(t, 5*time.Second, func() error {
		fake.mu.Lock()
		defer fake.mu.Unlock()
		if fake.closed != 1 {
			return fmt.Errorf("CloseClient called %d times, want 1 once the hanging calls return", fake.closed)
		}
		return nil
	})
}

// TestResubscribeAfterLeaving checks that a subscription to a service whose
// previous subscription is still leaving (its final Unsubscribe held up by
// the server) subscribes only once that Unsubscribe is done, so the two
// never cross in the SDK, while the Cleanup that left waited for nothing.
func TestResubscribeAfterLeaving(t *testing.T) {
	fake, release := newFake(), make(chan struct{})
	tn := testTuning(func(vo.NacosClientParam) (namingClient, error) { return blockingNaming{fake, release}, nil })
	var once sync.Once
	unblock := func() { once.Do(func() { close(release) }) }
	t.Cleanup(unblock)

	app := new(App)
	keep := &NacosUpstreams{Service: "other", tuning: tn} // holds the client
	first := &NacosUpstreams{Service: "orders", tuning: tn}
	for _, u := range []*NacosUpstreams{keep, first} {
		if err := u.provision(caddy.Log(), app); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() { _ = keep.Cleanup() })
	_ = app.Start()
	subscribed := func() int {
		fake.mu.Lock()
		defer fake.mu.Unlock()
		n := 0
		for p, c := range fake.subs {
			if p.ServiceName == "orders" {
				n += c
			}
		}
		return n
	}
	upstreamstest.Eventually(t, 5*time.Second, func() error {
		if n := subscribed(); n != 1 {
			return fmt.Errorf("%d Subscribes to orders, want 1", n)
		}
		return nil
	})
	start := time.Now()
	if err := first.Cleanup(); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 100*time.Millisecond {
		t.Errorf("Cleanup waited %v for the held-up Unsubscribe", d)
	}

	second := &NacosUpstreams{Service: "orders", tuning: tn}
	if err := second.provision(caddy.Log(), app); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = second.Cleanup() })
	second.subscription.start()
	time.Sleep(200 * time.Millisecond)
	if n := subscribed(); n != 1 {
		t.Fatalf("the new subscription subscribed while the old one's Unsubscribe was pending: %d Subscribes", n)
	}
	unblock()
	upstreamstest.Eventually(t, 5*time.Second, func() error {
		if n := subscribed(); n != 2 {
			return fmt.Errorf("%d Subscribes to orders after the old one left, want 2", n)
		}
		return nil
	})
}

// captureLogs sends what Caddy's default logger logs at info level and
// above to an observer until the test ends; the returned function hands
// over what was logged so far.
func captureLogs(t *testing.T) func() *observer.ObservedLogs {
	_, orig, buffered := caddy.BufferedLog()
	core, logs := observer.New(zapcore.InfoLevel)
	var mu sync.Mutex
	flush := func() *observer.ObservedLogs {
		mu.Lock()
		defer mu.Unlock()
		buffered.FlushTo(zap.New(core))
		return logs
	}
	t.Cleanup(func() { flush(); caddy.UnbufferDefaultLogger(orig) })
	return flush
}

// errorsAfter lists the error-level entries after the last entry with
// message msg, or after the start if there is none.
func errorsAfter(logs []observer.LoggedEntry, msg string) []string {
	from := 0
	for i, e := range logs {
		if e.Message == msg {
			from = i + 1
		}
	}
	var errs []string
	for _, e := range logs[from:] {
		if e.Level >= zapcore.ErrorLevel {
			errs = append(errs, fmt.Sprintf("%s %v", e.Message, e.ContextMap()))
		}
	}
	return errs
}

// connectingNaming answers Subscribe as the SDK does while its gRPC
// connection is not up although ServerHealthy already says healthy (the
// server's HTTP API answers): fails more Subscribes fail with the SDK's
// error, the next ones succeed and call back with one instance.
type connectingNaming struct {
	*fakeNaming
	fails *atomic.Int32
}

func (c connectingNaming) Subscribe(p *vo.SubscribeParam) error {
	if c.fails.Add(-1) >= 0 {
		c.mu.Lock()
		c.subs[p]++
		c.mu.Unlock()
		return errors.New("client not connected, current status:UNHEALTHY") // rpc_client.go:592
	}
	if err := c.fakeNaming.Subscribe(p); err != nil {
		return err
	}
	p.SubscribeCallback([]model.Instance{inst("10.0.0.1", 80)}, nil)
	return nil
}

// connectingTuning is a test tuning whose naming clients are all one
// connectingNaming, failing as many Subscribes as fails says.
func connectingTuning() (*tuning, *fakeNaming, *atomic.Int32) {
	fake, fails := newFake(), new(atomic.Int32)
	tn := testTuning(func(vo.NacosClientParam) (namingClient, error) { return connectingNaming{fake, fails}, nil })
	return tn, fake, fails
}

// TestSubscribeBeforeGRPC checks that a Subscribe failing because the SDK's
// gRPC connection is not up yet, while ServerHealthy already says healthy
// (at the start, and right after a reconnect), is the connection's matter:
// no error is logged or shown for it, and it is retried without waiting
// for the subscription backoff, so the source serves the list.
func TestSubscribeBeforeGRPC(t *testing.T) {
	logs := captureLogs(t)
	tn, fake, fails := connectingTuning()
	tn.retryMin, tn.retryMax = time.Minute, time.Minute // a retry after the backoff would be too late
	fails.Store(2)
	u := &NacosUpstreams{Service: "orders", tuning: tn}
	app := new(App)
	if err := u.provision(caddy.Log(), app); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = u.Cleanup() })
	_ = app.Start()
	served := func() error {
		_, err := u.GetUpstreams(nil)
		if err != nil && strings.Contains(err.Error(), sdkNotConnected) {
			t.Fatalf("the missing connection is shown as the subscription's problem: %v", err)
		}
		return upstreamstest.ExpectDials(u, "10.0.0.1:80")()
	}
	upstreamstest.Eventually(t, 5*time.Second, served)
	if errs := errorsAfter(logs().All(), ""); len(errs) > 0 {
		t.Errorf("error lines while the gRPC connection came up: %q", errs)
	}

	// the connection is lost and comes back; the first Subscribe after it
	// still finds no gRPC connection
	w := u.subscription
	fake.mu.Lock()
	fake.healthy = false
	fake.mu.Unlock()
	upstreamstest.Eventually(t, 5*time.Second, func() error {
		if w.c.connProblem() == nil {
			return errors.New("outage not noticed")
		}
		return nil
	})
	fails.Store(1)
	fake.mu.Lock()
	fake.healthy = true
	before := fake.subs[w.param]
	fake.mu.Unlock()
	upstreamstest.Eventually(t, 5*time.Second, func() error {
		fake.mu.Lock()
		defer fake.mu.Unlock()
		if n := fake.subs[w.param] - before; n < 2 || fails.Load() >= 0 {
			return fmt.Errorf("%d Subscribes after the reconnect, want the failed one and its retry", n)
		}
		return nil
	})
	upstreamstest.Eventually(t, 5*time.Second, served)
	all := logs().All()
	if errs := errorsAfter(all, "connected to nacos server"); len(errs) > 0 {
		t.Errorf("error lines after the reconnect: %q", errs)
	}
	if n := len(errorsAfter(all, "")); n != 1 {
		t.Errorf("%d error lines in all, want 1 (the lost connection): %q", n, errorsAfter(all, ""))
	}
	if err := w.sub.Err(); err != nil {
		t.Errorf("subscription problem %v", err)
	}
	if w.c.noGRPC.Load() != 0 {
		t.Error("a Subscribe got through, but the client still notes no gRPC connection")
	}
}

// TestGRPCNeverComesUp checks that a gRPC connection that stays away while
// the server answers over HTTP (a wrong grpc_port) is reported once, as the
// connection's problem that names grpc_port, not as a subscription error,
// and that its end is logged once a Subscribe gets through.
func TestGRPCNeverComesUp(t *testing.T) {
	logs := captureLogs(t)
	tn, _, fails := connectingTuning()
	tn.grpcGrace = 100 * time.Millisecond
	fails.Store(math.MaxInt32)
	u := &NacosUpstreams{Service: "orders", tuning: tn}
	app := new(App)
	if err := u.provision(caddy.Log(), app); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = u.Cleanup() })
	_ = app.Start()
	want := "the server answers over HTTP, but no gRPC connection came up within 100ms; check grpc_port"
	upstreamstest.Eventually(t, 5*time.Second, func() error {
		if _, err := u.GetUpstreams(nil); err == nil || !strings.Contains(err.Error(), want) {
			return fmt.Errorf("err = %v, want %q", err, want)
		}
		return nil
	})
	time.Sleep(10 * tn.healthInterval) // more checks and retries: still one report
	errs := errorsAfter(logs().All(), "")
	if len(errs) != 1 || !strings.HasPrefix(errs[0], "nacos connection problem ") || !strings.Contains(errs[0], want) {
		t.Errorf("error lines = %q, want one connection problem", errs)
	}

	fails.Store(0)
	upstreamstest.Eventually(t, 5*time.Second, upstreamstest.ExpectDials(u, "10.0.0.1:80"))
	upstreamstest.Eventually(t, 5*time.Second, func() error {
		if err := u.subscription.c.connProblem(); err != nil {
			return err
		}
		return nil
	})
	if errs := errorsAfter(logs().All(), "connected to nacos server"); len(errs) > 0 {
		t.Errorf("error lines after the gRPC connection came up: %q", errs)
	}
}

// TestSubscribeErrors checks the explanation of a failing subscription, that
// it is logged once, and that validate-like provision+cleanup creates no
// client.
func TestSubscribeErrors(t *testing.T) {
	logs := captureLogs(t)
	tn, fake, created := fakeTuning()
	fake.subscribeErr = errors.New("rpc error: code = 403, user not found")
	u := &NacosUpstreams{Service: "orders", Server: Server{Username: "u", Password: "hunter2"}, tuning: tn}
	app := new(App)
	if err := u.provision(caddy.Log(), app); err != nil {
		t.Fatal(err)
	}
	_ = app.Start()
	upstreamstest.Eventually(t, 5*time.Second, func() error {
		_, err := u.GetUpstreams(nil)
		if err == nil || !strings.Contains(err.Error(), "rejected the credentials") || !strings.Contains(err.Error(), "check username and password") {
			return fmt.Errorf("err = %v", err)
		}
		if strings.Contains(err.Error(), "hunter2") {
			t.Fatal("password in error")
		}
		return nil
	})
	time.Sleep(10 * tn.retryMax) // more retries: still one line
	if errs := errorsAfter(logs().All(), ""); len(errs) != 1 ||
		!strings.HasPrefix(errs[0], "subscribing to nacos service failed; retrying with backoff ") || !strings.Contains(errs[0], "rejected the credentials") {
		t.Errorf("error lines = %q, want the explained subscription failure once", errs)
	}
	if err := u.Cleanup(); err != nil {
		t.Fatal(err)
	}

	*created = 0
	v := &NacosUpstreams{Service: "other", tuning: tn}
	if err := v.provision(caddy.Log(), new(App)); err != nil {
		t.Fatal(err)
	}
	if err := v.Cleanup(); err != nil {
		t.Fatal(err)
	}
	if *created != 0 {
		t.Fatal("provision without Start (caddy validate) must create no client")
	}
}

// pushingNaming calls back from Subscribe with an instance list, as a server
// that accepts the subscription does.
type pushingNaming struct{ *fakeNaming }

func (p pushingNaming) Subscribe(param *vo.SubscribeParam) error {
	if err := p.fakeNaming.Subscribe(param); err != nil {
		return err
	}
	param.SubscribeCallback([]model.Instance{inst("10.0.0.1", 80)}, nil)
	return nil
}

// TestNoListAfterSubscribe checks that a Subscribe that returns nil but is
// never followed by a list (SDK v2.3.5 on a refused request) is reported
// within the server's timeout with what to check, cleared by the first list,
// and that a server that answers raises no false alarm.
func TestNoListAfterSubscribe(t *testing.T) {
	tn, fake, _ := fakeTuning() // never calls back by itself
	u := &NacosUpstreams{Service: "orders", Server: Server{
		Username: "u", Password: "hunter2", Namespace: "prod", Timeout: caddy.Duration(100 * time.Millisecond),
	}, tuning: tn}
	app := new(App)
	if err := u.provision(caddy.Log(), app); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = u.Cleanup() })
	_ = app.Start()
	want := `subscribed to service prod/DEFAULT_GROUP@@orders but the server sent no instance list within 100ms: it may have refused the request; ` +
		`check username and password, and that namespace "prod" exists (use its ID, not its display name)`
	upstreamstest.Eventually(t, 5*time.Second, func() error {
		_, err := u.GetUpstreams(nil)
		if err == nil || !strings.Contains(err.Error(), want) {
			return fmt.Errorf("err = %v, want %q", err, want)
		}
		if strings.Contains(err.Error(), "hunter2") {
			t.Fatal("password in error")
		}
		return nil
	})
	fake.push("DEFAULT_GROUP@@orders", inst("10.0.0.1", 80))
	upstreamstest.Eventually(t, 5*time.Second, upstreamstest.ExpectDials(u, "10.0.0.1:80"))
	if u.subscription.silence.Err() != nil {
		t.Error("the first list must clear the problem")
	}

	pushing := testTuning(func(vo.NacosClientParam) (namingClient, error) { return pushingNaming{newFake()}, nil })
	v := &NacosUpstreams{Service: "billing", Server: Server{Timeout: caddy.Duration(30 * time.Millisecond)}, tuning: pushing}
	app2 := new(App)
	if err := v.provision(caddy.Log(), app2); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = v.Cleanup() })
	_ = app2.Start()
	upstreamstest.Eventually(t, 5*time.Second, upstreamstest.ExpectDials(v, "10.0.0.1:80"))
	time.Sleep(150 * time.Millisecond) // well past the timeout
	if err := upstreamstest.ExpectDials(v, "10.0.0.1:80")(); err != nil || v.subscription.silence.Err() != nil {
		t.Fatalf("false alarm: %v", err)
	}
}

// TestCredentialsReachLogin checks with the real SDK that username and
// password reach its login request (the Polaris test server cannot prove
// this: its login endpoint does not accept the SDK's form body).
func TestCredentialsReachLogin(t *testing.T) {
	got := make(chan url.Values, 10)
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/v1/auth/users/login") {
			_ = r.ParseForm()
			select {
			case got <- r.Form:
			default:
			}
			_, _ = w.Write([]byte(`{"accessToken":"t","tokenTtl":18000}`))
			return
		}
		http.NotFound(w, r)
	}))
	defer ts.Close()
	srv := Server{Addresses: []string{ts.URL}, Username: "caddy", Password: "s3cret", GRPCPort: 1, Timeout: caddy.Duration(200 * time.Millisecond)}
	p, err := srv.clientParam("")
	if err != nil {
		t.Fatal(err)
	}
	redirectSDKLogs()
	nc, err := defaultTuning().newNaming(p, new(sync.Mutex))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.CloseClient()
	select {
	case f := <-got:
		if f.Get("username") != "caddy" || f.Get("password") != "s3cret" {
			t.Fatalf("login form = %v", f)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no login request")
	}
}

// TestSDKLogRedaction checks that the access token and password the SDK
// prints into its request logs never reach Caddy's log.
func TestSDKLogRedaction(t *testing.T) {
	for _, in := range []string{
		`conn grpc request nacos server success, request=metadata:{type:"SubscribeServiceRequest" headers:{key:"accessToken" value:"tok.en-SECRET"} headers:{key:"app" value:"caddy"}}`,
		`request=&{Headers:map[accessToken:tok.en-SECRET app:caddy] Namespace:prod}`,
		`params:[{"password":"pa\"SECRET","username":"caddy"}],err:refused`,
		`login?username=caddy&password=SECRET&x=1`,
	} {
		out := redactSecrets(in)
		if strings.Contains(out, "SECRET") || !strings.Contains(out, "REDACTED") {
			t.Errorf("redactSecrets(%q) = %q", in, out)
		}
		if strings.Contains(in, "caddy") && !strings.Contains(out, "caddy") {
			t.Errorf("redactSecrets(%q) = %q removed more than the secret", in, out)
		}
	}
}

// panickyNaming answers Subscribe the way the SDK does when a server sends
// a response of an unexpected type: with a panic on the caller's goroutine.
type panickyNaming struct{ *fakeNaming }

func (panickyNaming) Subscribe(*vo.SubscribeParam) error {
	var resp any = "not a SubscribeServiceResponse"
	_ = resp.(fmt.Stringer) // panics as the SDK's unchecked type assertion does
	return nil
}

// TestServerAnswersCannotCrash checks that SDK panics on a server's answers,
// at client creation (the login response) or on subscribing, become errors.
func TestServerAnswersCannotCrash(t *testing.T) {
	for name, nc := range map[string]func(vo.NacosClientParam) (namingClient, error){
		"login": func(vo.NacosClientParam) (namingClient, error) {
			var ttl any // {"accessToken":"t"} without tokenTtl
			return nil, fmt.Errorf("unreachable %v", ttl.(float64))
		},
		"subscribe": func(vo.NacosClientParam) (namingClient, error) { return panickyNaming{newFake()}, nil },
	} {
		t.Run(name, func(t *testing.T) {
			u := &NacosUpstreams{Service: "orders-" + name, tuning: testTuning(nc)}
			app := new(App)
			if err := u.provision(caddy.Log(), app); err != nil {
				t.Fatal(err)
			}
			defer func() { _ = u.Cleanup() }()
			_ = app.Start()
			upstreamstest.Eventually(t, 5*time.Second, func() error {
				if _, err := u.GetUpstreams(nil); err == nil || !strings.Contains(err.Error(), "is this a Nacos server?") {
					return fmt.Errorf("err = %v", err)
				}
				return nil
			})
		})
	}
}
