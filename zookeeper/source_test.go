package zookeeper

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
		u    ZooKeeperUpstreams
		want string
	}{
		"no service":            {ZooKeeperUpstreams{}, "service: required"},
		"service with slash":    {ZooKeeperUpstreams{Service: "a/b"}, "is not one ZooKeeper node name"},
		"service ..":            {ZooKeeperUpstreams{Service: ".."}, "is not one ZooKeeper node name"},
		"unknown format":        {ZooKeeperUpstreams{Service: "x", Format: "eureka"}, `format: unknown format "eureka"; use curator, dubbo, apisix`},
		"ssl_port for dubbo":    {ZooKeeperUpstreams{Service: "x", Format: "dubbo", SSLPort: true}, "ssl_port: only applies to format curator"},
		"protocols curator":     {ZooKeeperUpstreams{Service: "x", Protocols: []string{"tri"}}, "protocols: only apply to format dubbo"},
		"relative base":         {ZooKeeperUpstreams{Service: "x", BasePath: "services"}, "base_path: \"services\" is not an absolute ZooKeeper path"},
		"base with ..":          {ZooKeeperUpstreams{Service: "x", BasePath: "/a/../b"}, "has an empty, . or .. element"},
		"empty metadata key":    {ZooKeeperUpstreams{Service: "x", Metadata: map[string]string{"": "v"}}, "metadata: empty key"},
		"server and fields":     {ZooKeeperUpstreams{Service: "x", ServerName: "prod", Server: Server{Servers: []string{"10.0.0.1:2181"}}}, `server "prod" is named and connection fields are set too`},
		"no port":               {ZooKeeperUpstreams{Service: "x", Server: Server{Servers: []string{"10.0.0.1"}}}, "servers: \"10.0.0.1\" is not host:port"},
		"chroot in servers":     {ZooKeeperUpstreams{Service: "x", Server: Server{Servers: []string{"10.0.0.1:2181/app"}}}, "a chroot goes in base_path"},
		"credentials":           {ZooKeeperUpstreams{Service: "x", Server: Server{Servers: []string{"digest:zk-s3cret@10.0.0.1:2181"}}}, "credentials go in username and password"},
		"half credentials":      {ZooKeeperUpstreams{Service: "x", Server: Server{Password: "zk-s3cret"}}, "username and password go together"},
		"user with colon":       {ZooKeeperUpstreams{Service: "x", Server: Server{Username: "a:b", Password: "zk-s3cret"}}, "username: holds ':'"},
		"short session":         {ZooKeeperUpstreams{Service: "x", Server: Server{SessionTimeout: 1e8}}, "session_timeout: 100ms is too short"},
		"cert without key":      {ZooKeeperUpstreams{Service: "x", Server: Server{ClientTLS: upstreams.ClientTLS{CertFile: "/etc/caddy/zk.pem"}}}, "cert_file and key_file go together"},
		"per request, no allow": {ZooKeeperUpstreams{Service: "{re.svc.1}"}, "allow: required with a service chosen per request"},
	} {
		err := tc.u.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", name, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), "s3cret") {
			t.Errorf("%s: the error shows the password: %v", name, err)
		}
	}
	ok := ZooKeeperUpstreams{Service: "{http.request.host.labels.2}", PerRequest: upstreams.PerRequest{Allow: []string{"orders-*"}}, BasePath: "/prod/services", Metadata: map[string]string{"zone": "a"},
		Server: Server{Servers: []string{"zk-1:2181", "{env.ZK}"}, Username: "caddy", Password: "{env.ZK_PASSWORD}"}}
	if err := ok.Validate(); err != nil {
		t.Errorf("valid config: %v", err)
	}
}

// TestCaddyfile: the subdirectives of `dynamic zookeeper`, and the errors
// of a block written wrong.
func TestCaddyfile(t *testing.T) {
	var u ZooKeeperUpstreams
	d := caddyfile.NewTestDispenser(`zookeeper orders {
		format apisix
		base_path /apisix/discovery/zk
		metadata zone east
		servers 10.0.0.1:2181 10.0.0.2:2181
		session_timeout 6s
		username caddy
		password "zk s3cret"
		relist_interval -1s
		ca_file /etc/caddy/zk-ca.pem
	}`)
	if err := u.UnmarshalCaddyfile(d); err != nil {
		t.Fatal(err)
	}
	if u.Service != "orders" || u.Format != "apisix" || u.Metadata["zone"] != "east" || len(u.Servers) != 2 || u.Password != "zk s3cret" ||
		u.RelistInterval >= 0 || u.CAFile != "/etc/caddy/zk-ca.pem" {
		t.Errorf("read %+v", u)
	}
	for input, want := range map[string]string{
		"zookeeper":                                  "dynamic zookeeper needs a service",
		"zookeeper a b":                              "wrong argument count",
		"zookeeper a {\n bogus 1\n}":                 "unrecognized zookeeper option 'bogus'",
		"zookeeper a {\n ssl_port yes\n}":            "wrong argument count",
		"zookeeper a {\n format dubbo\n ssl_port\n}": "ssl_port: only applies to format curator",
		"zookeeper a {\n password zk s3cret\n}":      "password takes one argument, not 2",
	} {
		var u ZooKeeperUpstreams
		err := u.UnmarshalCaddyfile(caddyfile.NewTestDispenser(input))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want %q", input, err, want)
		}
		if err != nil && strings.Contains(err.Error(), "s3cret") {
			t.Errorf("%q: the error shows the password: %v", input, err)
		}
	}
}
