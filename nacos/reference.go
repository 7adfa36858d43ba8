package nacos

import (
	"fmt"
	"strings"
	"unicode"
)

// Reference names one Nacos service.
type Reference struct {
	// Namespace is the namespace ID, or "" for the server's namespace
	// (Nacos's "public" unless the server says otherwise).
	Namespace string
	// Group is the service's group, or "" for DEFAULT_GROUP.
	Group string
	// Service is the service name. Never empty.
	Service string
}

// defaultGroup is the group of services registered without one.
const defaultGroup = "DEFAULT_GROUP"

func (r Reference) String() string {
	g := r.Group
	if g == "" {
		g = defaultGroup
	}
	s := g + "@@" + r.Service
	if r.Namespace != "" {
		s = r.Namespace + "/" + s
	}
	return s
}

// referenceForms is the help text for a reference that does not parse.
const referenceForms = "service, group@@service, or namespace/group/service"

// ParseReference reads a service reference in one of these forms:
//
//	service                    group DEFAULT_GROUP, the server's namespace
//	group@@service             Nacos's own notation for a grouped name
//	namespace/group/service    as APISIX's namespace_id, group_name and
//	                           service_name; an empty namespace ("/g/s")
//	                           is the server's namespace, an empty group
//	                           ("ns//s") is DEFAULT_GROUP
//
// Service names may contain any printable character except '/' (in the
// first two forms '/' is not allowed either, so that the three forms cannot
// be confused), whitespace, and "@@"; they must not start with '@'.
// Namespace IDs and groups are made of letters, digits and "-_.:".
func ParseReference(s string) (Reference, error) {
	var r Reference
	if s == "" {
		return r, fmt.Errorf("empty service reference; use %s", referenceForms)
	}
	switch parts := strings.Split(s, "/"); len(parts) {
	case 1:
		if g, svc, ok := strings.Cut(s, "@@"); ok {
			if g == "" {
				return r, fmt.Errorf("service reference %q: empty group before '@@'; use %s", s, referenceForms)
			}
			r.Group, r.Service = g, svc
		} else {
			r.Service = s
		}
	case 3:
		r.Namespace, r.Group, r.Service = parts[0], parts[1], parts[2]
	default:
		return r, fmt.Errorf("service reference %q: expected %s", s, referenceForms)
	}
	if err := validateName("namespace", r.Namespace); err != nil {
		return r, fmt.Errorf("service reference %q: %w", s, err)
	}
	if err := validateName("group", r.Group); err != nil {
		return r, fmt.Errorf("service reference %q: %w", s, err)
	}
	if err := validateService(r.Service); err != nil {
		return r, fmt.Errorf("service reference %q: %w", s, err)
	}
	return r, nil
}

// validateService checks a service name before it reaches the SDK: an empty
// or malformed name makes the whole client unhealthy (nacos-sdk-go #868).
func validateService(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("empty service name; use %s", referenceForms)
	case strings.HasPrefix(name, "@"):
		return fmt.Errorf("service name %q must not start with '@'", name)
	case strings.Contains(name, "@@"):
		return fmt.Errorf("service name %q must not contain '@@' (a group goes before it: group@@service)", name)
	case len(name) > 512:
		return fmt.Errorf("service name of %d bytes is longer than 512", len(name))
	}
	for _, c := range name {
		if unicode.IsSpace(c) || !unicode.IsPrint(c) || c == '/' {
			return fmt.Errorf("service name %q contains %q, which Nacos does not accept in names", name, c)
		}
	}
	return nil
}

// validateName checks a namespace ID, group or cluster name; "" is allowed
// (it means the default).
func validateName(what, name string) error {
	if len(name) > 128 {
		return fmt.Errorf("%s of %d bytes is longer than 128", what, len(name))
	}
	for _, c := range name {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune("-_.:", c)) {
			return fmt.Errorf("invalid %s %q: only letters, digits and '-', '_', '.', ':' are allowed", what, name)
		}
	}
	return nil
}
