package upstreams

import (
	"errors"
	"fmt"
)

// CheckName checks the name of a connection defined in a source's app (a
// k8s cluster, a nacos server, …), wherever it is written: in the app, in
// a source's field, in a reference. what is the kind of name, as errors
// show it ("cluster", "server"). Every app follows this one rule: letters,
// digits, '-' and '_', so that a name can sit in a reference like
// cluster/namespace/name and in a metric label as it is.
func CheckName(what, name string) error {
	if name == "" {
		return errors.New("empty " + what + " name")
	}
	for _, c := range name {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return fmt.Errorf("invalid %s name %q; use letters, digits, '-' and '_'", what, name)
		}
	}
	return nil
}
