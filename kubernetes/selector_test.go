package kubernetes

import (
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

func TestNamespaceSelector(t *testing.T) {
	for _, c := range []struct {
		sel      NamespaceSelector
		selected []string
		refused  []string
	}{
		{NamespaceSelector{Equal: "shop"}, []string{"shop"}, []string{"shop2", "default"}},
		{NamespaceSelector{NotEqual: "kube-system"}, []string{"shop", "kube-public"}, []string{"kube-system"}},
		{NamespaceSelector{Match: []string{"default", "my-[a-z]+"}}, []string{"default", "my-shop"}, []string{"my-", "my-shop1", "xdefault", "defaults"}},
		{NamespaceSelector{NotMatch: []string{"kube-.*"}}, []string{"shop", "xkube-a"}, []string{"kube-system", "kube-"}},
		{NamespaceSelector{Match: []string{"team-.*"}, NotMatch: []string{"team-admin"}}, []string{"team-a"}, []string{"team-admin", "shop"}},
	} {
		n, err := c.sel.compile()
		if err != nil {
			t.Fatalf("%+v: %v", c.sel, err)
		}
		for _, ns := range c.selected {
			if err := n.check(ns); err != nil {
				t.Errorf("%+v refuses %q: %v", c.sel, ns, err)
			}
		}
		for _, ns := range c.refused {
			if err := n.check(ns); err == nil || !strings.Contains(err.Error(), "is not selected by namespaces") {
				t.Errorf("%+v: %q: err = %v, want not selected", c.sel, ns, err)
			}
		}
	}
	var none *NamespaceSelector
	if n, err := none.compile(); err != nil || !n.selects("anything") {
		t.Fatalf("no selector: %v, selects anything: %v", err, n.selects("anything"))
	}
	for sel, want := range map[*NamespaceSelector]string{
		{}:                        "namespaces: no condition",
		{Equal: "Shop"}:           `namespaces: equal: "Shop" is not a namespace name`,
		{Match: []string{"a(b"}}:  `namespaces: match: "a(b" is not an RE2 regular expression`,
		{NotMatch: []string{"*"}}: `namespaces: not_match: "*" is not an RE2`,
	} {
		if _, err := sel.compile(); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%+v: err = %v, want %q", *sel, err, want)
		}
	}
}

// TestSelectorsConfig: namespaces and label_selector from a Caddyfile, and
// the errors of Validate that name the field to fix.
func TestSelectorsConfig(t *testing.T) {
	u := new(KubernetesUpstreams)
	d := caddyfile.NewTestDispenser("k8s shop/web:http {\n namespaces match shop my-.*\n namespaces not_equal my-admin\n label_selector \"expose=gateway, tier in (web,api)\"\n}")
	if err := u.UnmarshalCaddyfile(d); err != nil {
		t.Fatal(err)
	}
	if got := *u.Namespaces; got.NotEqual != "my-admin" || strings.Join(got.Match, " ") != "shop my-.*" {
		t.Fatalf("namespaces = %+v", got)
	}
	sel, err := u.selection()
	if err != nil {
		t.Fatal(err)
	}
	if sel.labels != "expose=gateway,tier in (api,web)" {
		t.Fatalf("label selector as sent = %q", sel.labels)
	}
	for in, want := range map[string]string{
		"k8s other/web:http {\n namespaces equal shop\n}":                     `service: namespace "other" is not selected by namespaces (equal shop)`,
		"k8s shop/web:http {\n label_selector \"a in b\"\n}":                  `label_selector: "a in b":`,
		"k8s shop/web:http {\n namespaces equal shop\n namespaces equal x\n}": "namespaces equal has already been specified",
		"k8s shop/web:http {\n namespaces any shop\n}":                        `namespaces: unknown condition "any"`,
		"k8s shop/web:http {\n namespaces match\n}":                           "namespaces match needs a value",
	} {
		err := new(KubernetesUpstreams).UnmarshalCaddyfile(caddyfile.NewTestDispenser(in))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: err = %v, want %q", in, err, want)
		}
	}
}
