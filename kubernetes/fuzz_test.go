package kubernetes

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/utils/ptr"

	"github.com/caddy-discovery/caddy-discovery/upstreams"
	"github.com/caddy-discovery/caddy-discovery/upstreams/upstreamstest"
)

// The fuzz targets below run their seeds in every `go test`; to fuzz one:
//
//	go test -run '^$' -fuzz '^FuzzParseReference$' -fuzztime 60s -parallel 1 ./kubernetes/

// sourceFields are the config fields of a k8s source; every error of its
// configuration starts with one of them.
var sourceFields = []string{
	"service", "port", "cluster", "target", "node_address", "prefer_zone", "fallback_to_terminating",
	"kubeconfig", "context", "api_server", "server", "token", "token_file", "ca_file", "insecure_skip_verify",
}

// FuzzParseReference: a reference either parses into a Service the API
// server can have, with a port that can exist and a cluster name the k8s app
// can define, and prints back to itself; or the error quotes it.
func FuzzParseReference(f *testing.F) {
	for _, s := range []string{
		"shop/web", "shop/web:http", "shop/web:8080", "east/shop/web:http", "web.shop", "web.shop:80",
		"web.shop.svc", "web.shop.svc.cluster.local:http", "web.shop.svc.corp.example:http",
		"", "web", "web:80", "a/b/c/d", "/shop/web", "shop/web:", "shop/web:0", "shop/web:70000",
		"shop/web:Http_x", "Shop/web", "shop/1web", "web.shop.cluster.local", "shop/web:+80", "shop/web:-0",
		"shop/web:99999999999999999999", "shop/web::80",
		"shop/" + strings.Repeat("a", 64), "web.shop.svc..", "{env.SVC}",
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
		// "" only in name[:port], which takes the connection's namespace
		if errs := validation.IsDNS1123Label(r.Namespace); len(errs) > 0 && (r.Namespace != "" || r.Cluster != "" || strings.ContainsAny(s, "/.")) {
			t.Fatalf("ParseReference(%q) = %+v: namespace is no DNS-1123 label: %v", s, r, errs)
		}
		if errs := validation.IsDNS1035Label(r.Name); len(errs) > 0 {
			t.Fatalf("ParseReference(%q) = %+v: name is no DNS-1035 label: %v", s, r, errs)
		}
		if r.Port != "" {
			if err := validatePort(r.Port); err != nil {
				t.Fatalf("ParseReference(%q) = %+v: %v", s, r, err)
			}
		}
		if r.Cluster != "" {
			if err := (&App{Clusters: map[string]*Connection{r.Cluster: {}}}).Provision(caddy.Context{}); err != nil {
				t.Fatalf("ParseReference(%q) = %+v: a cluster the k8s app cannot define: %v", s, r, err)
			}
		}
		back, err := ParseReference(r.String())
		if err != nil || back != r {
			t.Fatalf("ParseReference(%q) = %+v, printed %q, which parses to %+v, %v", s, r, r.String(), back, err)
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

// FuzzCaddyfile: `dynamic k8s` either adapts to JSON that loads back
// unchanged and passes the same checks at load time as at adapt time, or
// fails with an error that says where in the Caddyfile.
func FuzzCaddyfile(f *testing.F) {
	for _, s := range []string{
		"k8s shop/web:http",
		"k8s web.shop.svc.cluster.local:8080",
		"k8s shop/web {\n port http\n target endpoints\n prefer_zone eu-1a\n fallback_to_terminating\n}",
		"k8s shop/web {\n port 30080\n target node_port\n node_address external\n}",
		"k8s east/shop/web:http",
		"k8s shop/web {\n cluster east\n}",
		"k8s shop/web {\n kubeconfig /etc/kubeconfig\n context prod\n}",
		"k8s shop/web {\n server https://10.0.0.1:6443\n token_file /var/run/token\n ca_file /ca.crt\n}",
		"k8s shop/web {\n server {env.KUBE_SERVER}\n token {env.KUBE_TOKEN}\n insecure_skip_verify\n}",
		"k8s {env.SVC}",
		"k8s",
		"k8s a b",
		"k8s web",
		"k8s shop/web {\n target pods\n}",
		"k8s shop/web {\n port http\n port 80\n}",
		"k8s shop/web:http {\n port 80\n}",
		"k8s shop/web {\n node_address internal\n}",
		"k8s shop/web {\n token a b\n}",
		"k8s shop/web {\n server https://x\n token a\n token_file /t\n}",
		"k8s east/shop/web {\n server https://x\n}",
		"k8s shop/web {\n weight 3\n}",
		"k8s shop/web {\n fallback_to_terminating yes\n}",
		"k8s shop/web {\n {\n}\n}",
		"k8s \"\"",
		"k8s shop/web {\n namespaces match shop my-[a-z]+\n namespaces not_equal kube-system\n label_selector \"expose=gateway,tier in (web,api)\"\n}",
		"k8s shop/{re.svc.1}:http {\n namespaces equal shop\n label_selector expose\n allow *\n}",
		"k8s shop/web {\n namespaces equal\n}",
		"k8s shop/web {\n namespaces match (\n}",
		"k8s shop/web {\n label_selector a=b=c\n}",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		d, ok := tokenize(in)
		if !ok {
			return
		}
		u := new(KubernetesUpstreams)
		if err := u.UnmarshalCaddyfile(d); err != nil {
			if !strings.Contains(err.Error(), ", at Testfile:") {
				t.Fatalf("%q: error %q does not say where", in, err)
			}
			return
		}
		js, err := json.Marshal(u)
		if err != nil {
			t.Fatal(err)
		}
		back := new(KubernetesUpstreams)
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
	})
}

// FuzzGlobalOption: the `k8s` global option either adapts to an app that
// provisions, or fails with an error that says where in the Caddyfile.
func FuzzGlobalOption(f *testing.F) {
	for _, s := range []string{
		"k8s {\n cluster default {\n kubeconfig /etc/caddy/kubeconfig\n }\n}",
		"k8s {\n cluster east {\n server https://10.0.0.1:6443\n token_file /t\n ca_file /ca\n }\n cluster west {\n kubeconfig /k\n context w\n }\n}",
		"k8s {\n cluster a {\n server {env.S}\n token {env.T}\n }\n}",
		"k8s {\n cluster a\n cluster a\n}",
		"k8s {\n cluster\n}",
		"k8s {\n server a\n}",
		"k8s {\n cluster a {\n weight 1\n }\n}",
		"k8s {\n cluster a {\n token x\n }\n}",
		"k8s x",
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

// FuzzJSON: a k8s source's JSON (and the k8s app's) either loads and
// provisions without a request to the API server, with the same checks as
// at adapt time, or fails with an error that starts with the field to fix
// and never shows the token.
func FuzzJSON(f *testing.F) {
	for _, s := range [][2]string{
		{`{"service": "shop/web", "port": 8080, "server": "https://127.0.0.1:6443"}`, ``},
		{`{"service": "shop/web", "api_server": "https://127.0.0.1:6443", "server": "https://127.0.0.1:6443"}`, ``},
		{`{"service": "shop/web", "api_server": "https://127.0.0.1:6443", "token": "s3cr3t-token"}`, ``},
		{`{"service": "shop/web", "port": "8080", "server": "https://127.0.0.1:6443", "token": "s3cr3t-token"}`, ``},
		{`{"service": "shop/web", "port": "http", "target": "node_port", "node_address": "external"}`, ``},
		{`{"service": "web.shop.svc.cluster.local:http", "prefer_zone": "a", "fallback_to_terminating": true}`, ``},
		{`{"service": "{env.HOME}", "server": "{env.S}", "token": "{env.T}"}`, ``},
		{`{"service": "east/shop/web:http"}`, `{"clusters": {"east": {"server": "https://127.0.0.1:1"}}}`},
		{`{"service": "shop/web", "cluster": "default"}`, `{"clusters": {"default": {"kubeconfig": "/k"}}}`},
		{`{"service": "west/shop/web"}`, `{"clusters": {"east": {"server": "https://127.0.0.1:1"}}}`},
		{`{"service": "shop/web", "port": true}`, ``},
		{`{"service": "shop/web", "port": 8080.5}`, ``},
		{`{"service": "shop/web", "port": 1e3}`, ``},
		{`{"service": "shop/web", "port": -1}`, ``},
		{`{"service": "shop/web", "port": 99999999999999999999}`, ``},
		{`{"service": "shop/web:http", "port": 80}`, ``},
		{`{"service": "web"}`, ``},
		{`{"server": "https://127.0.0.1:1"}`, ``},
		{`{"service": "shop/web", "target": "pods"}`, ``},
		{`{"service": "shop/web", "node_address": "internal"}`, ``},
		{`{"service": "shop/web", "server": "https://127.0.0.1:1", "token": "s3cr3t-token", "token_file": "/t"}`, ``},
		{`{"service": "shop/web", "server": "https://user:s3cr3t@127.0.0.1:1"}`, ``},
		{`{"service": "shop/web", "server": "127.0.0.1:6443"}`, ``},
		{`{"service": "east/shop/web", "server": "https://127.0.0.1:1"}`, ``},
		{`{"service": "shop/web", "namespace": "shop"}`, ``},
		{`{"service": "shop/web"}`, `{"clusters": {"spare": {"token": "x"}}}`},
		{`{"service": "shop/web"}`, `{"clusters": {"a.b": {}}}`},
		{`{"service": "shop/web"}`, `{"clusters": {"a": null}}`},
	} {
		f.Add([]byte(s[0]), []byte(s[1]))
	}
	client := fake.NewClientset()
	f.Fuzz(func(t *testing.T, source, appJSON []byte) {
		if strings.Contains(string(source)+string(appJSON), "file.") {
			return // {file.*} placeholders read files, which may block
		}
		u := new(KubernetesUpstreams)
		if err := caddy.StrictUnmarshalJSON(source, u); err != nil {
			return // encoding/json's own errors, with the Go field path
		}
		check := func(err error, fields ...string) {
			t.Helper()
			if !upstreamstest.NamesField(err.Error(), fields...) {
				t.Fatalf("%s: error %q does not start with the field to fix (one of %v)", source, err, fields)
			}
			if tok := u.Token; len(tok) >= 6 && !strings.Contains(strings.ReplaceAll(string(source), tok, ""), tok) &&
				strings.Contains(err.Error(), tok) {
				t.Fatalf("%s: error %q shows the token", source, err)
			}
		}
		ref, sel, err := u.parse(caddy.NewReplacer())
		loadErr := err
		if loadErr == nil {
			loadErr = u.Connection.Validate()
		}
		if !strings.ContainsAny(string(source), "{}\\") {
			if adaptErr := u.Validate(); fmt.Sprint(loadErr) != fmt.Sprint(adaptErr) {
				t.Fatalf("%s: adapt time: %v; load time: %v", source, adaptErr, loadErr)
			}
		}
		if err != nil {
			check(err, sourceFields...)
			return
		}
		if err := u.Connection.Validate(); err != nil {
			check(err, sourceFields...)
		}
		app := new(App)
		if caddy.StrictUnmarshalJSON(appJSON, app) == nil {
			if err := app.Provision(caddy.Context{}); err != nil {
				check(err, "clusters")
				app = new(App)
			}
		}
		name, conn, err := clusters.Resolve(app.Clusters, ref.Cluster, u.Connection)
		if err != nil {
			check(err, sourceFields...)
			return
		}
		if err := conn.Validate(); err != nil {
			t.Fatalf("%s: connection() returned a connection that does not validate: %v", source, err)
		}
		// Provision's last step, with a fake client for the one that
		// restConfig builds: it must start no watch and send nothing.
		if ref.Namespace == "" {
			ref.Namespace = "default" // Provision asks the connection
		}
		v := new(KubernetesUpstreams)
		if err := v.subscribe(caddy.Log(), app, name, "fp-fuzz", client, ref, sel); err != nil {
			t.Fatal(err)
		}
		if _, err := v.GetUpstreams(nil); err == nil || !strings.Contains(err.Error(), "waiting for the first list") {
			t.Fatalf("%s: before start: %v", source, err)
		}
		if err := v.Cleanup(); err != nil {
			t.Fatal(err)
		}
		if n := len(client.Actions()); n != 0 {
			t.Fatalf("%s: provisioning sent %d requests: %v", source, n, client.Actions())
		}
	})
}

// fuzzSets are informer sets that are never started, whose caches
// FuzzEndpointSlices fills directly: the state a subscription computes its
// targets from after a sync.
var fuzzSets = sync.OnceValues(func() (ns, nodeSet *informerSet) {
	client := fake.NewClientset()
	var err error
	if ns, err = newInformerSet("fuzz", "shop", "", client, services, endpointSlices); err != nil {
		panic(err)
	}
	if nodeSet, err = newInformerSet("fuzz", "", "", client, nodes); err != nil {
		panic(err)
	}
	ns.synced.Store(true)
	nodeSet.synced.Store(true)
	return ns, nodeSet
})

// fuzzAddrs splits a fuzzed string into addresses, with a few to fall back on.
func fuzzAddrs(s string) []string {
	addrs := strings.Split(s, ",")
	return append(addrs, "10.0.0.1", "fd00::1", "0.0.0.0", "::ffff:10.0.0.2", "fe80::1%eth0", "")
}

func fuzzBool(st *upstreamstest.Stream) *bool {
	switch st.Intn(3) {
	case 0:
		return nil
	case 1:
		return ptr.To(true)
	}
	return ptr.To(false)
}

func fuzzString(st *upstreamstest.Stream, choices ...string) *string {
	if i := st.Intn(len(choices) + 1); i < len(choices) {
		return ptr.To(choices[i])
	}
	return nil
}

// FuzzEndpointSlices builds a Service, its EndpointSlices and the Nodes from
// fuzzed primitives (addresses from a comma-separated string, everything
// else from bytes), puts them in a subscription's caches as if the API
// server had sent them, and computes the targets as a watch event does. The
// API server validates what it stores, but nothing it sends may crash the
// source or make it dial a broken address: every target is a valid,
// specified, zone-free IP with a port from 1 to 65535 and weight 1, and an
// error names the Service.
func FuzzEndpointSlices(f *testing.F) {
	for _, s := range []struct {
		addrs, port, zone string
		data              []byte
	}{
		{"10.0.0.1,10.0.0.2", "http", "a", []byte{0, 0, 0, 2, 1, 0, 0, 1}},
		{"10.0.0.1,fd00::2,web.example.com", "80", "", []byte{1, 1, 3, 8, 3, 1, 2, 2, 2, 4, 1, 1, 2}},
		{"0.0.0.0,::,fe80::1%eth0,::ffff:10.0.0.9,1.2.3.4", "", "b", []byte{2, 0, 1, 2, 0, 4, 4, 0, 0, 0, 2, 3, 0, 1, 2}},
		{"192.168.0.1,203.0.113.1", "http", "", []byte{2, 1, 0, 3, 5, 6, 1, 1, 1, 0, 0, 3, 1, 0, 1, 1}},
		{"10.0.0.1", "9100", "", []byte{0, 0, 8, 9, 0, 1, 0, 0, 1}},
		{"::ffff:10.96.0.10", "http", "", []byte{1, 1, 0, 0, 0, 0, 0}},
		{"10.0.0.1", "metrics", "z", []byte{255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255}},
	} {
		f.Add(s.addrs, s.port, s.zone, s.data)
	}
	ns, nodeSet := fuzzSets()
	f.Fuzz(func(t *testing.T, addrList, portRef, zone string, data []byte) {
		st := upstreamstest.Stream(data)
		addrs := fuzzAddrs(addrList)
		addr := func() string { return addrs[st.Intn(len(addrs))] }
		portNames := []string{"", "http", "metrics", portRef}

		sel := selection{
			target:            st.Pick(targetEndpoints, targetClusterIP, targetNodePort),
			nodeAddress:       st.Pick(nodeInternal, nodeExternal),
			terminatingBackup: st.Bool(),
		}
		if st.Bool() {
			sel.zone = zone
		}
		svc := &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web"},
			Spec: corev1.ServiceSpec{
				Type:                  corev1.ServiceType(st.Pick("ClusterIP", "NodePort", "LoadBalancer", "ExternalName")),
				ClusterIP:             st.Pick("10.96.0.10", "None", "", addr()),
				ExternalTrafficPolicy: corev1.ServiceExternalTrafficPolicy(st.Pick("Cluster", "Local")),
			},
		}
		for range 1 + st.Intn(3) {
			sp := corev1.ServicePort{
				Name:     st.Pick(portNames...),
				Port:     st.Int32(),
				NodePort: st.Int32(),
				Protocol: corev1.Protocol(st.Pick("", "TCP", "UDP", "SCTP")),
			}
			if st.Bool() {
				sp.TargetPort = intstr.FromInt32(st.Int32())
			} else {
				sp.TargetPort = intstr.FromString(st.Pick(portNames...))
			}
			svc.Spec.Ports = append(svc.Spec.Ports, sp)
		}
		var esObjs []any
		for i := range st.Intn(4) {
			es := &discoveryv1.EndpointSlice{
				ObjectMeta:  metav1.ObjectMeta{Namespace: "shop", Name: fmt.Sprintf("web-%d", i), Labels: map[string]string{discoveryv1.LabelServiceName: st.Pick("web", "web", "other")}},
				AddressType: discoveryv1.AddressType(st.Pick("IPv4", "IPv6", "FQDN", "")),
			}
			for range st.Intn(3) {
				p := discoveryv1.EndpointPort{Name: fuzzString(&st, portNames...), Protocol: (*corev1.Protocol)(fuzzString(&st, "TCP", "UDP", "SCTP"))}
				if st.Intn(4) > 0 {
					p.Port = ptr.To(st.Int32())
				}
				es.Ports = append(es.Ports, p)
			}
			for range st.Intn(5) {
				e := discoveryv1.Endpoint{
					Conditions: discoveryv1.EndpointConditions{Ready: fuzzBool(&st), Serving: fuzzBool(&st), Terminating: fuzzBool(&st)},
					Zone:       fuzzString(&st, zone, "other"),
					NodeName:   fuzzString(&st, "n0", "n1", "n2"),
				}
				for range st.Intn(3) {
					e.Addresses = append(e.Addresses, addr())
				}
				es.Endpoints = append(es.Endpoints, e)
			}
			esObjs = append(esObjs, es)
		}
		var nodeObjs []any
		for i := range st.Intn(4) {
			n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("n%d", i)}, Spec: corev1.NodeSpec{Unschedulable: st.Bool()}}
			for range st.Intn(3) {
				n.Status.Addresses = append(n.Status.Addresses, corev1.NodeAddress{
					Type:    corev1.NodeAddressType(st.Pick("InternalIP", "ExternalIP", "Hostname")),
					Address: addr(),
				})
			}
			if c := st.Pick("", "True", "False", "Unknown"); c != "" {
				n.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionStatus(c)}}
			}
			nodeObjs = append(nodeObjs, n)
		}

		must := func(err error) {
			if err != nil {
				t.Fatal(err)
			}
		}
		must(ns.indexer(services).Replace(transformed(t, services, []any{svc}), ""))
		must(ns.indexer(endpointSlices).Replace(transformed(t, endpointSlices, esObjs), ""))
		must(nodeSet.indexer(nodes).Replace(transformed(t, nodes, nodeObjs), ""))
		sub := &view{ref: Reference{Namespace: "shop", Name: "web", Port: portRef}, sel: sel, ns: ns}
		if sel.target == targetNodePort {
			sub.nodes = nodeSet
		}
		targets, err := sub.compute()
		if err != nil {
			if len(targets) > 0 {
				t.Fatalf("targets %v with error %v", targets, err)
			}
			if !strings.Contains(err.Error(), "shop/web") {
				t.Fatalf("error %q does not name the Service", err)
			}
		} else if len(targets) == 0 {
			t.Fatal("no targets and no error")
		}
		// what the API server sent, so that no target can be invented
		sent := map[string]bool{}
		for _, a := range append(addrs, svc.Spec.ClusterIP) {
			if addr, err := netip.ParseAddr(a); err == nil {
				sent[addr.Unmap().String()] = true
			}
		}
		sentPorts := map[int32]bool{}
		for _, sp := range svc.Spec.Ports {
			sentPorts[sp.Port], sentPorts[sp.NodePort] = true, true
		}
		for _, o := range esObjs {
			for _, p := range o.(*discoveryv1.EndpointSlice).Ports {
				if p.Port != nil {
					sentPorts[*p.Port] = true
				}
			}
		}
		for _, tg := range targets {
			if err := upstreamstest.CheckDial(tg.Dial()); err != nil || tg.Weight != 1 {
				t.Fatalf("target %+v: %v", tg, err)
			}
			if !sent[tg.Addr.String()] || !sentPorts[int32(tg.Port)] {
				t.Fatalf("target %+v: an address or port that no object holds", tg)
			}
		}
		ups, uerr := upstreams.NewSnapshot(targets, err).Upstreams()
		if (uerr == nil) != (err == nil) {
			t.Fatalf("snapshot of %d targets, %v: upstreams error %v", len(targets), err, uerr)
		}
		if err := upstreamstest.CheckUpstreams(ups); err != nil {
			t.Fatal(err)
		}
	})
}

// transformed are objs as r's informer keeps them.
func transformed(t *testing.T, r resource, objs []any) []any {
	out := make([]any, len(objs))
	for i, o := range objs {
		var err error
		if out[i], err = r.transform(o); err != nil {
			t.Fatal(err)
		}
	}
	return out
}
