package kubernetes

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/caddy-discovery/caddy-discovery/upstreams"
)

// Reference names one Service port in one cluster.
type Reference struct {
	// Cluster is the name of a cluster in the k8s app, or "" for the default.
	Cluster string
	// Namespace and Name identify the Service. Namespace is "" when the
	// reference names none: the connection's namespace applies (see
	// Connection.namespace).
	Namespace, Name string
	// Port is the Service port's name or number, or a targetPort; "" when the
	// Service has a single port.
	Port string
}

func (r Reference) String() string {
	s := r.Name
	if r.Namespace != "" {
		s = r.Namespace + "/" + s
	}
	if r.Cluster != "" {
		s = r.Cluster + "/" + s
	}
	if r.Port != "" {
		s += ":" + r.Port
	}
	return s
}

// referenceForms is the help text for a reference that does not parse.
const referenceForms = "namespace/name[:port], cluster/namespace/name[:port], name.namespace[.svc[.cluster.local]][:port], or name[:port]"

// ParseReference reads a Service reference in any of the accepted forms:
//
//	namespace/name[:port]
//	cluster/namespace/name[:port]
//	name.namespace[:port]
//	name.namespace.svc[:port]
//	name.namespace.svc.cluster.local[:port]   (any cluster domain)
//	name[:port]                               (the connection's namespace)
//
// The port is a Service port name or number, or a targetPort. A reference
// that names no namespace has Namespace "".
func ParseReference(s string) (Reference, error) {
	var r Reference
	if s == "" {
		return r, fmt.Errorf("empty service reference; use %s", referenceForms)
	}
	svc := s
	if i := strings.LastIndexByte(s, ':'); i >= 0 {
		svc, r.Port = s[:i], s[i+1:]
		if r.Port == "" {
			return r, fmt.Errorf("service reference %q: empty port after ':'", s)
		}
		if err := validatePort(r.Port); err != nil {
			return r, fmt.Errorf("service reference %q: %w", s, err)
		}
	}
	namesNamespace := true
	switch parts := strings.Split(svc, "/"); {
	case len(parts) == 3:
		r.Cluster, r.Namespace, r.Name = parts[0], parts[1], parts[2]
		if err := upstreams.CheckName("cluster", r.Cluster); err != nil {
			return r, fmt.Errorf("service reference %q: %w", s, err)
		}
	case len(parts) == 2:
		r.Namespace, r.Name = parts[0], parts[1]
	case len(parts) > 3:
		return r, fmt.Errorf("service reference %q has too many '/'; use %s", s, referenceForms)
	case !strings.Contains(svc, "."):
		r.Name, namesNamespace = svc, false // the connection's namespace
	default:
		labels := strings.Split(svc, ".")
		if len(labels) > 2 && labels[2] != "svc" {
			return r, fmt.Errorf("service reference %q: expected name.namespace.svc.<cluster domain>; use %s", s, referenceForms)
		}
		r.Name, r.Namespace = labels[0], labels[1]
	}
	if errs := validation.IsDNS1123Label(r.Namespace); namesNamespace && len(errs) > 0 {
		return r, fmt.Errorf("service reference %q: invalid namespace %q: %s", s, r.Namespace, strings.Join(errs, "; "))
	}
	if errs := validation.IsDNS1035Label(r.Name); len(errs) > 0 {
		return r, fmt.Errorf("service reference %q: invalid service name %q: %s", s, r.Name, strings.Join(errs, "; "))
	}
	return r, nil
}

func validatePort(p string) error {
	if n, err := strconv.Atoi(p); err == nil {
		if n < 1 || n > 65535 {
			return fmt.Errorf("port %d out of range 1-65535", n)
		}
		return nil
	}
	if errs := validation.IsDNS1123Label(p); len(errs) > 0 {
		return fmt.Errorf("port %q is neither a number nor a port name: %s", p, strings.Join(errs, "; "))
	}
	return nil
}

// Port is a Service port given by name or number. In JSON it may be written
// as a string ("http", "8080") or a number (8080).
type Port string

// UnmarshalJSON accepts a JSON string or number.
func (p *Port) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*p = Port(s)
		return nil
	}
	var n json.Number
	if err := json.Unmarshal(b, &n); err != nil {
		return fmt.Errorf("port must be a name (\"http\") or a number (8080), not %s", b)
	}
	if _, err := n.Int64(); err != nil {
		return fmt.Errorf("port must be a whole number, not %s", n)
	}
	*p = Port(n.String())
	return nil
}
