package kubernetes

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestParseReference(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    Reference
		wantErr string
	}{
		{in: "shop/web", want: Reference{Namespace: "shop", Name: "web"}},
		{in: "shop/web:http", want: Reference{Namespace: "shop", Name: "web", Port: "http"}},
		{in: "shop/web:8080", want: Reference{Namespace: "shop", Name: "web", Port: "8080"}},
		{in: "east/shop/web:http", want: Reference{Cluster: "east", Namespace: "shop", Name: "web", Port: "http"}},
		{in: "web.shop", want: Reference{Namespace: "shop", Name: "web"}},
		{in: "web.shop:80", want: Reference{Namespace: "shop", Name: "web", Port: "80"}},
		{in: "web.shop.svc", want: Reference{Namespace: "shop", Name: "web"}},
		{in: "web.shop.svc.cluster.local", want: Reference{Namespace: "shop", Name: "web"}},
		{in: "web.shop.svc.cluster.local:http", want: Reference{Namespace: "shop", Name: "web", Port: "http"}},
		{in: "web.shop.svc.corp.example:http", want: Reference{Namespace: "shop", Name: "web", Port: "http"}},
		{in: "", wantErr: "empty service reference"},
		{in: "web", want: Reference{Name: "web"}},
		{in: "web:80", want: Reference{Name: "web", Port: "80"}},
		{in: "web.", wantErr: `invalid namespace ""`},
		{in: "/web", wantErr: `invalid namespace ""`},
		{in: "Web:http", wantErr: "invalid service name"},
		{in: "a/b/c/d", wantErr: "too many '/'"},
		{in: "/shop/web", wantErr: "empty cluster name"},
		{in: "shop/web:", wantErr: "empty port"},
		{in: "shop/web:0", wantErr: "out of range"},
		{in: "shop/web:70000", wantErr: "out of range"},
		{in: "shop/web:Http_x", wantErr: "neither a number nor a port name"},
		{in: "Shop/web", wantErr: "invalid namespace"},
		{in: "shop/1web", wantErr: "invalid service name"},
		{in: "web.shop.cluster.local", wantErr: "expected name.namespace.svc"},
	} {
		got, err := ParseReference(tc.in)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("ParseReference(%q) error = %v, want it to contain %q", tc.in, err, tc.wantErr)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("ParseReference(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
		}
	}
}

func TestPortJSON(t *testing.T) {
	for in, want := range map[string]Port{`8080`: "8080", `"8080"`: "8080", `"http"`: "http", ` 443 `: "443"} {
		var p Port
		if err := json.Unmarshal([]byte(in), &p); err != nil || p != want {
			t.Errorf("unmarshal %s = %q, %v; want %q", in, p, err, want)
		}
	}
	for _, in := range []string{`8080.5`, `true`, `{}`, `[80]`} {
		var p Port
		if err := json.Unmarshal([]byte(in), &p); err == nil {
			t.Errorf("unmarshal %s = %q, want an error", in, p)
		}
	}
	// The whole source, as Caddy decodes it.
	var u KubernetesUpstreams
	if err := json.Unmarshal([]byte(`{"service": "shop/web", "port": 8080}`), &u); err != nil || u.Port != "8080" {
		t.Fatalf("source with numeric port: %+v, %v", u, err)
	}
}

func TestConnectionValidate(t *testing.T) {
	for _, tc := range []struct {
		c       Connection
		wantErr string
	}{
		{c: Connection{}},
		{c: Connection{Kubeconfig: "/k", Context: "c"}},
		{c: Connection{Server: "https://10.0.0.1:6443", TokenFile: "/t", CAFile: "/ca"}},
		{c: Connection{Server: "{env.KUBE_SERVER}", Token: "{env.KUBE_TOKEN}"}},
		{c: Connection{Server: "https://x", Token: "a", TokenFile: "/t"}, wantErr: "token and token_file are both set"},
		{c: Connection{Token: "a"}, wantErr: "go with server"},
		{c: Connection{Server: "https://x", Kubeconfig: "/k"}, wantErr: "use one way to connect"},
		{c: Connection{Server: "10.0.0.1:6443"}, wantErr: "is not a URL"},
	} {
		err := tc.c.Validate()
		if (tc.wantErr == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.wantErr)) {
			t.Errorf("Validate(%+v) = %v, want error containing %q", tc.c, err, tc.wantErr)
		}
	}
}

func TestSecretsStayOutOfErrors(t *testing.T) {
	c := Connection{Server: "https://10.0.0.1:6443", Token: "s3cr3t-token", TokenFile: "/t"}
	if err := c.Validate(); err == nil || strings.Contains(err.Error(), "s3cr3t") {
		t.Fatalf("error %v must exist and not contain the token", err)
	}
	_, a, _ := Connection{Server: "https://10.0.0.1:6443", Token: "s3cr3t-token"}.restConfig("")
	_, b, _ := Connection{Server: "https://10.0.0.1:6443", Token: "other"}.restConfig("")
	if a == b || strings.Contains(a, "s3cr3t") {
		t.Fatalf("fingerprints %q and %q must differ and hold no secret", a, b)
	}
}

func TestReferenceString(t *testing.T) {
	for ref, want := range map[Reference]string{
		{Name: "web"}:                    "web",
		{Name: "web", Port: "http"}:      "web:http",
		{Namespace: "shop", Name: "web"}: "shop/web",
		{Cluster: "east", Namespace: "shop", Name: "web", Port: "80"}: "east/shop/web:80",
	} {
		if got := ref.String(); got != want {
			t.Errorf("%+v.String() = %q, want %q", ref, got, want)
		}
	}
}
