package etcd

import (
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/caddy-discovery/caddy-discovery/upstreams"
)

// TestValidate: what Validate refuses, with the field and the fix in the
// message, and never a password.
func TestValidate(t *testing.T) {
	for name, tc := range map[string]struct {
		u    EtcdUpstreams
		want string
	}{
		"no service":            {EtcdUpstreams{}, "service: required"},
		"service with a space":  {EtcdUpstreams{Service: "a b"}, "service: \"a b\" holds spaces"},
		"unknown format":        {EtcdUpstreams{Service: "x", Format: "nacos"}, `format: unknown format "nacos"; use etcd, kratos, go-zero, go-micro, json`},
		"fields, not json":      {EtcdUpstreams{Service: "x", Fields: &JSONFields{Address: "host"}}, "fields: only apply to format json, not etcd"},
		"go-zero metadata":      {EtcdUpstreams{Service: "x", Format: "go-zero", Metadata: map[string]string{"a": "b"}}, "metadata: go-zero instances have none"},
		"empty metadata key":    {EtcdUpstreams{Service: "x", Metadata: map[string]string{"": "v"}}, "metadata: empty key"},
		"server and fields":     {EtcdUpstreams{Service: "x", ServerName: "prod", Server: Server{Endpoints: []string{"10.0.0.1:2379"}}}, `server "prod" is named and connection fields are set too`},
		"no port":               {EtcdUpstreams{Service: "x", Server: Server{Endpoints: []string{"10.0.0.1"}}}, "endpoints: \"10.0.0.1\": give the port too"},
		"other scheme":          {EtcdUpstreams{Service: "x", Server: Server{Endpoints: []string{"grpc://10.0.0.1:2379"}}}, "scheme must be http or https"},
		"credentials in URL":    {EtcdUpstreams{Service: "x", Server: Server{Endpoints: []string{"http://root:etcd-s3cret@10.0.0.1:2379"}}}, "credentials go in username and password"},
		"half credentials":      {EtcdUpstreams{Service: "x", Server: Server{Password: "etcd-s3cret"}}, "username and password go together"},
		"negative timeout":      {EtcdUpstreams{Service: "x", Server: Server{DialTimeout: -1}}, "dial_timeout: -1ns is negative"},
		"cert without key":      {EtcdUpstreams{Service: "x", Server: Server{ClientTLS: upstreams.ClientTLS{CertFile: "/etc/caddy/etcd.pem"}}}, "cert_file and key_file go together"},
		"per request, no allow": {EtcdUpstreams{Service: "{re.svc.1}"}, "allow: required with a service chosen per request"},
		"allow, fixed service":  {EtcdUpstreams{Service: "shop", PerRequest: upstreams.PerRequest{Allow: []string{"shop"}}}, "only apply to a service chosen per request"},
		"bad glob":              {EtcdUpstreams{Service: "{re.svc.1}", PerRequest: upstreams.PerRequest{Allow: []string{"shop-["}}}, `allow: "shop-[" is not a glob`},
		"bad regex":             {EtcdUpstreams{Service: "{re.svc.1}", PerRequest: upstreams.PerRequest{Allow: []string{"(shop"}, Regex: true}}, `allow: "(shop" is not an RE2 regular expression`},
		"prefix per request":    {EtcdUpstreams{Service: "{re.svc.1}", Prefix: "/x/", PerRequest: upstreams.PerRequest{Allow: []string{"*"}}}, "prefix: a service chosen per request"},
	} {
		err := tc.u.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", name, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), "s3cret") {
			t.Errorf("%s: the error shows the password: %v", name, err)
		}
	}
	ok := EtcdUpstreams{Service: "{http.request.host.labels.2}", PerRequest: upstreams.PerRequest{Allow: []string{"shop-*"}}, Format: "json", Fields: &JSONFields{Address: "ip", Port: "port"},
		Server: Server{Endpoints: []string{"https://etcd-1:2379", "{env.ETCD}"}, Username: "caddy", Password: "{env.ETCD_PASSWORD}"}}
	if err := ok.Validate(); err != nil {
		t.Errorf("valid config: %v", err)
	}
}

// TestCaddyfile: the subdirectives of `dynamic etcd`, and the errors of a
// block written wrong.
func TestCaddyfile(t *testing.T) {
	var u EtcdUpstreams
	d := caddyfile.NewTestDispenser(`etcd shop {
		format json
		fields host port w meta
		prefix /registry/shop/
		metadata zone east
		endpoints https://10.0.0.1:2379 https://10.0.0.2:2379
		username caddy
		password "etcd s3cret"
		ca_file /etc/caddy/etcd-ca.pem
		cert_file /etc/caddy/etcd.pem
		key_file /etc/caddy/etcd-key.pem
		dial_timeout 3s
	}`)
	if err := u.UnmarshalCaddyfile(d); err != nil {
		t.Fatal(err)
	}
	if u.Service != "shop" || u.Format != "json" || u.Fields == nil || u.Fields.Weight != "w" || u.Prefix != "/registry/shop/" ||
		len(u.Endpoints) != 2 || u.Password != "etcd s3cret" || u.KeyFile != "/etc/caddy/etcd-key.pem" || u.DialTimeout != 3e9 {
		t.Errorf("read %+v", u)
	}
	for input, want := range map[string]string{
		"etcd":                                    "dynamic etcd needs a service",
		"etcd a {\n bogus 1\n}":                   "unrecognized etcd option 'bogus'",
		"etcd a {\n format json\n fields\n}":      "fields takes the json format's field names",
		"etcd a {\n fields a\n fields b\n}":       "fields has already been specified",
		"etcd a {\n dial_timeout soon\n}":         `dial_timeout: "soon" is not a duration`,
		"etcd a {\n password etcd s3cret\n}":      "password takes one argument, not 2",
		"etcd a {\n format go-zero\n fields a\n}": "fields: only apply to format json, not go-zero",
	} {
		var u EtcdUpstreams
		err := u.UnmarshalCaddyfile(caddyfile.NewTestDispenser(input))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want %q", input, err, want)
		}
		if err != nil && strings.Contains(err.Error(), "s3cret") {
			t.Errorf("%q: the error shows the password: %v", input, err)
		}
	}
}
