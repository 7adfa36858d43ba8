package nacos

import (
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddy-discovery/caddy-discovery/upstreams"
)

// TestServerErrorsHideCredentials: an address written with credentials in
// it, the APISIX way, is refused with an error that shows the address
// without them.
func TestServerErrorsHideCredentials(t *testing.T) {
	for _, tc := range []struct {
		srv  Server
		want string
	}{
		{Server{Addresses: []string{"http://nacos:s3cretPassw0rd@127.0.0.1:8848/nacos"}},
			`addresses: "http://REDACTED@127.0.0.1:8848/nacos": only scheme, host, port and path are allowed`},
		{Server{Addresses: []string{"nacos:s3cretPassw0rd@127.0.0.1:8848"}}, `"REDACTED@127.0.0.1:8848" is neither host:port nor a URL`},
		{Server{Addresses: []string{"http://nacos:s3cret%zzPassw0rd@127.0.0.1:8848"}}, `"http://REDACTED@127.0.0.1:8848" is not a URL`},
		{Server{Addresses: []string{"https://u:s3cretPassw0rd@[::1"}}, `"https://REDACTED@[::1" is not a URL`},
	} {
		err := tc.srv.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: error = %v, want it to contain %q", tc.srv.Addresses, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), "s3cret") {
			t.Errorf("the error shows the password: %v", err)
		}
	}
}

// TestGRPCPortErrorShowsAddressAsWritten: the address in the error is the
// one in the config, not the parsed and rewritten one.
func TestGRPCPortErrorShowsAddressAsWritten(t *testing.T) {
	_, err := Server{Addresses: []string{"10.0.0.1:64999"}}.clientParam("")
	want := `addresses: "10.0.0.1:64999": the gRPC port 65999 (port + 1000) is out of range; set grpc_port`
	if err == nil || err.Error() != want {
		t.Fatalf("error = %v, want %q", err, want)
	}
}

// TestErrorsNameWhatTheUserWrote: an error in a source's own connection
// fields names the field and the address as written; one in a server of the
// nacos app names that server.
func TestErrorsNameWhatTheUserWrote(t *testing.T) {
	inline := &NacosUpstreams{Service: "shop", Server: Server{Addresses: []string{"10.0.0.1:64999"}}}
	err := inline.provision(caddy.Log(), new(App))
	want := `addresses: "10.0.0.1:64999": the gRPC port 65999 (port + 1000) is out of range; set grpc_port`
	if err == nil || err.Error() != want {
		t.Errorf("inline connection: error = %v, want %q", err, want)
	}

	named := &NacosUpstreams{Service: "shop", ServerName: "prod"}
	err = named.provision(caddy.Log(), &App{upstreams.ServerApp[Server]{Servers: map[string]*Server{"prod": {Addresses: []string{"http://10.0.0.1:64999/nacos"}}}}})
	want = `nacos server "prod": addresses: "http://10.0.0.1:64999/nacos": the gRPC port 65999 (port + 1000) is out of range; set grpc_port`
	if err == nil || err.Error() != want {
		t.Errorf("named server: error = %v, want %q", err, want)
	}
}

// TestClientNamesItsServer: messages about a connection name the app's
// server it belongs to, and only that.
func TestClientNamesItsServer(t *testing.T) {
	param, err := Server{Addresses: []string{"10.0.0.1:8848"}}.clientParam("")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := newClient("", param, defaultTuning()).where, "nacos server at 10.0.0.1:8848 (gRPC 9848)"; got != want {
		t.Errorf("a source's own connection: %q, want %q", got, want)
	}
	if got, want := newClient("prod", param, defaultTuning()).where, `nacos server "prod" at 10.0.0.1:8848 (gRPC 9848)`; got != want {
		t.Errorf("a named server: %q, want %q", got, want)
	}
}
