package kubernetes

import (
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation"
)

// NamespaceSelector says which namespaces a source may read Services from,
// as Apache APISIX's namespace_selector does. A namespace is selected when
// it passes every condition that is set. Services in other namespaces are
// refused: a fixed reference when the config loads, a Service chosen per
// request with the denied status, before any request to the API server.
type NamespaceSelector struct {
	// Only this namespace.
	Equal string `json:"equal,omitempty"`

	// Any namespace but this one.
	NotEqual string `json:"not_equal,omitempty"`

	// Namespaces that match one of these RE2 regular expressions. A
	// regular expression must match the whole name, e.g. `default` or
	// `my-[a-z]+` (APISIX's match also accepts a part of the name: write
	// `.*` around a part).
	Match []string `json:"match,omitempty"`

	// Namespaces that match none of these RE2 regular expressions (whole
	// names, as in `match`), e.g. `kube-.*`.
	NotMatch []string `json:"not_match,omitempty"`
}

// namespaces is a compiled NamespaceSelector; the zero value selects every
// namespace.
type namespaces struct {
	equal, notEqual string
	match, notMatch []*regexp.Regexp
	shown           string // the selector as written, for errors
}

// compile checks the selector; errors name its field.
func (s *NamespaceSelector) compile() (namespaces, error) {
	if s == nil {
		return namespaces{}, nil
	}
	n := namespaces{equal: s.Equal, notEqual: s.NotEqual}
	var parts []string
	for _, c := range []struct {
		field, value string
	}{{"equal", s.Equal}, {"not_equal", s.NotEqual}} {
		if c.value == "" {
			continue
		}
		if errs := validation.IsDNS1123Label(c.value); len(errs) > 0 {
			return n, fmt.Errorf("namespaces: %s: %q is not a namespace name: %s", c.field, c.value, strings.Join(errs, "; "))
		}
		parts = append(parts, c.field+" "+c.value)
	}
	for _, c := range []struct {
		field string
		exprs []string
		dst   *[]*regexp.Regexp
	}{{"match", s.Match, &n.match}, {"not_match", s.NotMatch, &n.notMatch}} {
		for _, expr := range c.exprs {
			re, err := regexp.Compile(`^(?:` + expr + `)$`)
			if err != nil {
				return n, fmt.Errorf("namespaces: %s: %q is not an RE2 regular expression: %v", c.field, expr, err)
			}
			*c.dst = append(*c.dst, re)
		}
		if len(c.exprs) > 0 {
			parts = append(parts, c.field+" "+strings.Join(c.exprs, " "))
		}
	}
	if len(parts) == 0 {
		return n, errors.New("namespaces: no condition; set equal, not_equal, match or not_match, or remove namespaces")
	}
	n.shown = strings.Join(parts, "; ")
	return n, nil
}

// selects reports whether the namespace ns is selected.
func (n namespaces) selects(ns string) bool {
	if n.equal != "" && ns != n.equal || n.notEqual != "" && ns == n.notEqual {
		return false
	}
	for _, re := range n.notMatch {
		if re.MatchString(ns) {
			return false
		}
	}
	if len(n.match) == 0 {
		return true
	}
	for _, re := range n.match {
		if re.MatchString(ns) {
			return true
		}
	}
	return false
}

// check refuses a namespace the selector does not select.
func (n namespaces) check(ns string) error {
	if n.selects(ns) {
		return nil
	}
	return fmt.Errorf("service: namespace %q is not selected by namespaces (%s)", ns, n.shown)
}

// parseLabelSelector checks a label_selector and returns it in the form
// the API server takes ("" selects everything).
func parseLabelSelector(s string) (string, error) {
	if strings.TrimSpace(s) == "" {
		return "", nil
	}
	sel, err := labels.Parse(s)
	if err != nil {
		return "", fmt.Errorf("label_selector: %q: %v; write it as kubectl's -l, e.g. expose=gateway,tier in (web,api)", s, err)
	}
	return sel.String(), nil
}

// unmarshalNamespaces reads the namespaces subdirective, once per
// condition:
//
//	namespaces equal|not_equal <namespace>
//	namespaces match|not_match <regex...>
func (u *KubernetesUpstreams) unmarshalNamespaces(d *caddyfile.Dispenser) error {
	if u.Namespaces == nil {
		u.Namespaces = new(NamespaceSelector)
	}
	if !d.NextArg() {
		return d.Err("namespaces takes equal, not_equal, match or not_match and its values, e.g. namespaces match default my-[a-z]+")
	}
	kind, args := d.Val(), d.RemainingArgs()
	if len(args) == 0 {
		return d.Errf("namespaces %s needs a value", kind)
	}
	one := func(dst *string) error {
		switch {
		case *dst != "":
			return d.Errf("namespaces %s has already been specified", kind)
		case len(args) > 1:
			return d.Errf("namespaces %s takes one namespace", kind)
		}
		*dst = args[0]
		return nil
	}
	switch kind {
	case "equal":
		return one(&u.Namespaces.Equal)
	case "not_equal":
		return one(&u.Namespaces.NotEqual)
	case "match":
		u.Namespaces.Match = append(u.Namespaces.Match, args...)
	case "not_match":
		u.Namespaces.NotMatch = append(u.Namespaces.NotMatch, args...)
	default:
		return d.Errf("namespaces: unknown condition %q; use equal, not_equal, match or not_match", kind)
	}
	return nil
}
