package upstreams

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddy-discovery/caddy-discovery/redact"
)

// What every registry's app (consul, eureka, k8s, nacos, …) does alike: it
// holds named connections, checks them once, resolves the one a source
// uses, and starts what the config's sources use. An app is its module
// type, its docs and one Connections value; the steps are here.

// Connection is a registry's connection settings (a consul Server, a k8s
// Connection), as an app names them and as a source writes them inline.
type Connection[T any] interface {
	// IsSet reports whether any connection field is set: a source that
	// sets none uses its app's default connection.
	IsSet() bool
	// Expand returns the settings with placeholders such as {env.X}
	// replaced; an error names the field, never a secret's value.
	Expand(repl *caddy.Replacer) (T, error)
	// Validate checks that the fields fit together; an error starts with
	// the field to fix. It reads no file, and skips values that still hold
	// placeholders.
	Validate() error
}

// Connections describes the named connections of one app, for the checks
// and errors that every app shares.
type Connections[T Connection[T]] struct {
	// App is the app's module ID and global option: "consul".
	App string
	// Kind is what the app calls a connection, "server" or "cluster"; the
	// app's JSON field is its plural.
	Kind string
	// Field is the source field that names a connection ("server"): the
	// error for an undefined name starts with it. Empty where a reference
	// names the connection (k8s's cluster/namespace/name): the error then
	// starts with the kind, as in `cluster "west" is not defined`.
	Field string
	// Named is how an error names one of them, with %q for its name:
	// "consul server %q". Errors of a source's own fields name no
	// connection: they start with the field, as the source's others do.
	Named string
}

// Check checks the named connections at Provision of the app (see
// CheckNamed).
func (c Connections[T]) Check(named map[string]*T) error {
	return CheckNamed(c.Kind, "empty "+c.Kind, named)
}

// Resolve returns the connection a source uses (see Pick), with its
// placeholders replaced and checked, and its name in the app ("" for the
// source's own fields or the built-in default).
func (c Connections[T]) Resolve(named map[string]*T, name string, inline T) (string, T, error) {
	name, conn, ok := Pick(named, name, inline, inline.IsSet())
	if !ok {
		ref := c.Kind
		if c.Field != "" {
			ref = c.Field + ":"
		}
		return "", conn, fmt.Errorf("%s %q is not defined in the %s app; defined %ss: %v", ref, name, c.App, c.Kind, Defined(named))
	}
	conn, err := conn.Expand(caddy.NewReplacer())
	if err == nil {
		err = conn.Validate()
	}
	if err != nil {
		return "", conn, c.In(name, err)
	}
	return name, conn, nil
}

// In says which named connection an error concerns; an error of a source's
// own fields (name "") is returned as it is.
func (c Connections[T]) In(name string, err error) error {
	if name == "" || err == nil {
		return err
	}
	return fmt.Errorf(c.Named+": %w", name, err)
}

// CheckSource checks a source's choice of connection as written: a valid
// name, and not both a name and connection fields of its own.
func (c Connections[T]) CheckSource(name string, inline T) error {
	if name == "" {
		return nil
	}
	field := cmp.Or(c.Field, c.Kind)
	if err := CheckName(c.Kind, name); err != nil {
		return fmt.Errorf("%s: %w", field, err)
	}
	if inline.IsSet() {
		return fmt.Errorf("%s %q is named and connection fields are set too; define the connection in the %s app's %s %q, or remove the %s name",
			c.Kind, name, c.App, c.Kind, name, c.Kind)
	}
	return nil
}

// DefaultName is the name of the connection that a source without a
// connection name, and without connection fields of its own, uses if its
// app defines one by that name.
const DefaultName = "default"

// CheckNamed checks the named connections of an app at Provision, in name
// order: each name by CheckName, no null entry (empty is its error, e.g.
// "empty server"), each connection by its Validate. kind is what the app
// calls one ("server", "cluster"); errors start with the JSON field, its
// plural ("servers: dc2: ...").
func CheckNamed[T interface{ Validate() error }](kind, empty string, named map[string]*T) error {
	for _, name := range slices.Sorted(maps.Keys(named)) {
		if err := CheckName(kind, name); err != nil {
			return fmt.Errorf("%ss: %w", kind, err)
		}
		c := named[name]
		if c == nil {
			return fmt.Errorf("%ss: %s: %s", kind, name, empty)
		}
		if err := (*c).Validate(); err != nil {
			return fmt.Errorf("%ss: %s: %w", kind, name, err)
		}
	}
	return nil
}

// Pick chooses the connection of a source from its app's named ones: the
// one named name; with name "", the source's own connection fields (inline)
// if it sets any (inlineSet); else the one named "default"; else the zero
// value, the source's built-in default. It returns the name of the one
// chosen, "" for inline or the built-in default. ok is false when name is
// not defined; the caller says so in its own words.
func Pick[T any](named map[string]*T, name string, inline T, inlineSet bool) (_ string, _ T, ok bool) {
	var zero T
	switch c := named[name]; {
	case name != "" && c == nil:
		return name, zero, false
	case name != "":
		return name, *c, true
	case inlineSet:
		return "", inline, true
	}
	if c := named[DefaultName]; c != nil {
		return DefaultName, *c, true
	}
	return "", zero, true
}

// Starts collects the start functions of what the sources of one config
// use (clients, watches, feeds, informers), so that the app's Start starts
// them once the whole config is provisioned. A function may come more than
// once (sources share clients) or belong to something already running for
// the previous config: it must start only once (sync.OnceFunc). The zero
// value is ready to use; it is safe for concurrent use.
type Starts struct {
	mu  sync.Mutex
	fns []func()
}

// Add adds start functions, to be called in this order.
func (s *Starts) Add(start ...func()) {
	s.mu.Lock()
	s.fns = append(s.fns, start...)
	s.mu.Unlock()
}

// Start calls the start functions added so far, in order: an app that
// embeds Starts starts what its config's sources use, in the background,
// without waiting for any registry. What already runs for the previous
// config goes on as it is.
func (s *Starts) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, start := range s.fns {
		start()
	}
	return nil
}

// Stop does nothing: what sources use stops when the last source using it
// is cleaned up (see Lease), which lets a reload keep it.
func (*Starts) Stop() error { return nil }

// Defined lists the names of an app's connections in order, for an error
// that says which ones there are.
func Defined[T any](named map[string]*T) []string {
	return slices.Sorted(maps.Keys(named))
}

// Expand replaces the placeholders in v, such as {env.X}; an unknown one is
// an error. With a nil replacer (at adapt time, before placeholders can be
// replaced) it returns v, and ok reports whether v has none, so that it can
// be checked as written.
func Expand(repl *caddy.Replacer, v string) (_ string, ok bool, _ error) {
	if repl == nil {
		return v, !strings.Contains(v, "{"), nil
	}
	s, err := repl.ReplaceOrErr(v, true, true)
	return s, err == nil, err
}

// ServerApp is the part of an app whose connections its JSON calls servers
// (consul, eureka, nacos): embedded in the app, it holds them, checks them
// at Provision, and gives the app its Start and Stop (see Starts).
type ServerApp[T Connection[T]] struct {
	// Named server connections, e.g. "default", "prod". A source with
	// `server prod` uses the one named "prod".
	Servers map[string]*T `json:"servers,omitempty"`

	Starts
}

// Provision checks the servers.
func (s *ServerApp[T]) Provision(caddy.Context) error {
	return CheckNamed("server", "empty server", s.Servers)
}

// Field is a string field of a config, by the name its errors give it.
type Field struct {
	Name  string
	Value *string

	// Secret: the value is a password, token or key, which an error must
	// not show, not even the placeholder it seems to hold.
	Secret bool
}

// ExpandFields replaces the placeholders in each field, in order: what a
// connection's Expand does. An error names the field and the placeholder,
// never the field's value; for a secret field, not even the placeholder,
// which could be part of a password that has braces in it.
func ExpandFields(repl *caddy.Replacer, fields ...Field) error {
	for _, f := range fields {
		v, err := repl.ReplaceOrErr(*f.Value, true, true)
		switch {
		case err != nil && f.Secret:
			return fmt.Errorf(`%s: holds a placeholder Caddy does not know (not shown: the value is a secret); use {env.NAME} or {file./path}, or write a literal brace as \{ and \}`, f.Name)
		case err != nil:
			return fmt.Errorf("%s: %w", f.Name, err)
		}
		*f.Value = v
	}
	return nil
}

// ExpandList replaces the placeholders in each element of the list field
// named name, in a copy of the list, so that the config's own list keeps
// them. The list holds addresses: an error shows an address that has
// credentials in it only with them redacted, a placeholder in them too.
func ExpandList(repl *caddy.Replacer, name string, list *[]string) error {
	*list = slices.Clone(*list)
	for i, v := range *list {
		s, err := repl.ReplaceOrErr(v, true, true)
		switch {
		case err != nil && redact.Address(v) != v:
			return fmt.Errorf("%s: %q holds a placeholder Caddy does not know (credentials not shown)", name, redact.Address(v))
		case err != nil:
			return fmt.Errorf("%s: %w", name, err)
		}
		(*list)[i] = s
	}
	return nil
}
