// Package caddyfile holds the Caddyfile parsing steps that the registry
// sources share: reading one subdirective's arguments into a config field,
// refusing the same subdirective twice, reading the named connection blocks
// of an app's global option.
package caddyfile

import (
	"encoding/json"
	"maps"
	"slices"
	"strconv"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"

	"github.com/caddy-discovery/caddy-discovery/upstreams"
)

// An Option reads one subdirective of a block (its name is d.Val()) into
// the config field it was made for. The readers below refuse a subdirective
// given twice and a wrong number of arguments.
type Option struct {
	read   func(d *caddyfile.Dispenser) error
	former bool // a former name, read but not listed among the known ones
}

// Read reads the current subdirective with o, for an option whose own
// reader builds on another's.
func (o Option) Read(d *caddyfile.Dispenser) error { return o.read(d) }

// Options are the subdirectives a block knows, by name: one table is both
// what a block reads and what its unknown-option error lists.
type Options map[string]Option

// With adds more's options to o and returns o.
func (o Options) With(more Options) Options {
	maps.Copy(o, more)
	return o
}

// Read reads the current subdirective; ok is false for one o does not know.
func (o Options) Read(d *caddyfile.Dispenser) (ok bool, err error) {
	opt, ok := o[d.Val()]
	if !ok {
		return false, nil
	}
	return true, opt.read(d)
}

// names lists the options for an error, sorted, without former names.
func (o Options) names() []string {
	var names []string
	for name, opt := range o {
		if !opt.former {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	return names
}

// Func is an option read by f, for a subdirective with a syntax of its own.
func Func(f func(d *caddyfile.Dispenser) error) Option { return Option{read: f} }

// Former is opt under a name that has been replaced: still read, not listed.
func Former(opt Option) Option {
	opt.former = true
	return opt
}

// String reads the single argument of a subdirective into dst.
func String(dst *string) Option {
	return Func(func(d *caddyfile.Dispenser) error {
		if err := once(d, *dst != ""); err != nil {
			return err
		}
		if !d.NextArg() {
			return d.ArgErr()
		}
		*dst = d.Val()
		if d.NextArg() {
			return d.ArgErr()
		}
		return nil
	})
}

// Secret reads the single argument of a subdirective, a password, token or
// key, into dst. Unlike String's, its errors never show an argument: a
// secret written with a space in it would otherwise appear in the error.
func Secret(dst *string) Option {
	return Func(func(d *caddyfile.Dispenser) error {
		name := d.Val()
		if err := once(d, *dst != ""); err != nil {
			return err
		}
		args := d.RemainingArgs()
		if len(args) != 1 {
			return d.Errf("%s takes one argument, not %d; quote a value with spaces in it, or use a placeholder such as {env.SECRET}", name, len(args))
		}
		*dst = args[0]
		return nil
	})
}

// Strings reads the one or more arguments of a subdirective into dst.
func Strings(dst *[]string) Option {
	return Func(func(d *caddyfile.Dispenser) error {
		if err := once(d, len(*dst) > 0); err != nil {
			return err
		}
		args := d.RemainingArgs()
		if len(args) == 0 {
			return d.ArgErr()
		}
		*dst = args
		return nil
	})
}

// Flag sets dst for a subdirective that takes no argument.
func Flag(dst *bool) Option {
	return Func(func(d *caddyfile.Dispenser) error {
		if err := once(d, *dst); err != nil {
			return err
		}
		if d.NextArg() {
			return d.ArgErr()
		}
		*dst = true
		return nil
	})
}

// Duration reads the single duration argument (e.g. 5s, 1m) of a
// subdirective into dst.
func Duration(dst *caddy.Duration) Option {
	return Func(func(d *caddyfile.Dispenser) error {
		name, s, err := single(d, *dst != 0)
		if err != nil {
			return err
		}
		v, err := caddy.ParseDuration(s)
		if err != nil {
			return d.Errf("%s: %q is not a duration such as 5s or 1m: %v", name, s, err)
		}
		*dst = caddy.Duration(v)
		return nil
	})
}

// Int reads the single integer argument of a subdirective into dst.
func Int(dst *int) Option {
	return Func(func(d *caddyfile.Dispenser) error {
		name, s, err := single(d, *dst != 0)
		if err != nil {
			return err
		}
		v, err := strconv.Atoi(s)
		if err != nil {
			return d.Errf("%s takes a whole number, not %q", name, s)
		}
		*dst = v
		return nil
	})
}

// single reads the one argument of the current subdirective, refused when
// set says it was given before; name is the subdirective's.
func single(d *caddyfile.Dispenser, set bool) (name, arg string, err error) {
	name = d.Val()
	if err := once(d, set); err != nil {
		return name, "", err
	}
	err = String(&arg).read(d)
	return name, arg, err
}

func once(d *caddyfile.Dispenser, set bool) error {
	if set {
		return d.Errf("%s has already been specified", d.Val())
	}
	return nil
}

// Map reads the key and the value that a subdirective (such as metadata)
// takes into dst, once per key. example completes "<name> takes a key and a
// value, e.g. ".
func Map(dst *map[string]string, example string) Option {
	return Func(func(d *caddyfile.Dispenser) error {
		name := d.Val()
		var k, v string
		if !d.Args(&k, &v) || d.NextArg() {
			return d.Errf("%s takes a key and a value, e.g. %s", name, example)
		}
		if _, dup := (*dst)[k]; dup {
			return d.Errf("%s %q has already been specified", name, k)
		}
		if *dst == nil {
			*dst = make(map[string]string)
		}
		(*dst)[k] = v
		return nil
	})
}

// unknown is the error for a subdirective that the block does not know.
func unknown(d *caddyfile.Dispenser, block string, known []string) error {
	return d.Errf("unrecognized %s option '%s' (known options: %v)", block, d.Val(), known)
}

// NamedBlocks parses a global option that configures the app appName with
// connections in blocks named by kind, such as
//
//	k8s {
//		cluster <name> {
//			...
//		}
//	}
//
// into *blocks, a map field of app. When the option appears more than once,
// existing holds what the earlier ones gave, and the blocks are added to
// theirs; a name given twice is refused, and so is one that breaks
// upstreams.CheckName. example completes "<kind> needs a name, e.g. ".
// options gives the subdirectives of a block, bound to its connection.
// Each connection is checked with its Validate. It returns the app for
// httpcaddyfile.RegisterGlobalOption.
func NamedBlocks[T interface{ Validate() error }](d *caddyfile.Dispenser, existing any, appName string, app any,
	blocks *map[string]*T, kind, example string, options func(*T) Options,
) (any, error) {
	if prev, ok := existing.(httpcaddyfile.App); ok {
		if err := json.Unmarshal(prev.Value, app); err != nil {
			return nil, err
		}
	}
	d.Next() // consume option name
	if d.NextArg() {
		return nil, d.ArgErr()
	}
	for d.NextBlock(0) {
		if d.Val() != kind {
			return nil, unknown(d, appName+" global", []string{kind})
		}
		if !d.NextArg() {
			return nil, d.Errf("%s needs a name, e.g. %s", kind, example)
		}
		name := d.Val()
		if d.NextArg() {
			return nil, d.ArgErr()
		}
		if _, dup := (*blocks)[name]; dup {
			return nil, d.Errf("%s %q has already been specified", kind, name)
		}
		if err := upstreams.CheckName(kind, name); err != nil {
			return nil, d.Err(err.Error())
		}
		c := new(T)
		opts := options(c)
		for d.NextBlock(1) {
			ok, err := opts.Read(d)
			if !ok {
				return nil, unknown(d, appName+" "+kind, opts.names())
			}
			if err != nil {
				return nil, err
			}
		}
		if err := (*c).Validate(); err != nil {
			return nil, d.Errf("%s %q: %v", kind, name, err)
		}
		if *blocks == nil {
			*blocks = make(map[string]*T)
		}
		(*blocks)[name] = c
	}
	return httpcaddyfile.App{Name: appName, Value: caddyconfig.JSON(app, nil)}, nil
}

// Source reads the tokens of `dynamic <source> <arg> { … }`: the one
// argument into arg (without one, the error is need, which shows how to
// write it), each subdirective through options, and last checks the result
// with validate, so that what can be known before placeholders are replaced
// is reported at adapt time.
func Source(d *caddyfile.Dispenser, source string, arg *string, need string, options Options, validate func() error) error {
	d.Next() // the source's name
	if !d.NextArg() {
		return d.Err(need)
	}
	*arg = d.Val()
	if d.NextArg() {
		return d.ArgErr()
	}
	for d.NextBlock(0) {
		ok, err := options.Read(d)
		if !ok {
			return unknown(d, source, options.names())
		}
		if err != nil {
			return err
		}
	}
	if err := validate(); err != nil {
		return d.Err(err.Error())
	}
	return nil
}

// TLS gives the subdirectives of a connection's TLS settings, bound to t.
func TLS(t *upstreams.ClientTLS) Options {
	return Options{"tls": Flag(&t.TLS), "ca_file": String(&t.CAFile), "cert_file": String(&t.CertFile),
		"key_file": String(&t.KeyFile), "tls_server_name": String(&t.TLSServerName)}
}

// ServerOption is the global option of an app whose named connections are
// its servers (consul, etcd, eureka, nacos, zookeeper), for
// httpcaddyfile.RegisterGlobalOption:
//
//	{
//		<app> {
//			server <name> {
//				<connection subdirectives>
//			}
//		}
//	}
//
// example completes "server needs a name, e.g. "; options gives a block's
// subdirectives, bound to its connection.
func ServerOption[T upstreams.Connection[T]](app, example string, options func(*T) Options) httpcaddyfile.UnmarshalGlobalFunc {
	return func(d *caddyfile.Dispenser, existing any) (any, error) {
		a := new(upstreams.ServerApp[T])
		return NamedBlocks(d, existing, app, a, &a.Servers, "server", example, options)
	}
}

// PerRequest gives the subdirectives of a service chosen per request,
// bound to p.
func PerRequest(p *upstreams.PerRequest) Options {
	return Options{"allow": Strings(&p.Allow), "deny": Strings(&p.Deny), "regex": Flag(&p.Regex),
		"max_services": Int(&p.MaxServices), "max_lookups": Int(&p.MaxLookups), "denied_status": Int(&p.DeniedStatus),
		"idle_timeout": Duration(&p.IdleTimeout), "first_answer_timeout": Duration(&p.FirstAnswerTimeout), "unknown_ttl": Duration(&p.UnknownTTL)}
}
