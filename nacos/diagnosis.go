package nacos

import (
	"fmt"
	"slices"
	"strings"

	"github.com/nacos-group/nacos-sdk-go/v2/model"
	"github.com/nacos-group/nacos-sdk-go/v2/vo"

	"github.com/caddy-discovery/caddy-discovery/upstreams"
)

// The diagnosis of a subscription that fails, is refused, or finds no
// usable instance: each says what to fix, and carries its kind for the
// metrics. Server errors do not echo credentials.

// explain turns a failed subscription into an error that says what to fix,
// marked with its kind for the metrics. Server errors do not echo
// credentials.
func (w *subscription) explain(err error) error {
	msg := strings.ToLower(err.Error())
	ns := w.c.namespace
	if ns == "" {
		ns = "public"
	}
	has := func(words ...string) bool {
		for _, s := range words {
			if strings.Contains(msg, s) {
				return true
			}
		}
		return false
	}
	switch {
	case has("403", "401", "forbidden", "unauthorized", "no right", "access denied", "token invalid", "token expired",
		"user not found", "unknown user", "authority", "auth failed", "invalid username", "password"):
		hint := "the server requires authentication: set username and password (or access_key and secret_key)"
		switch w.c.auth {
		case "username":
			hint = fmt.Sprintf("check username and password, and that the user may read namespace %q", ns)
		case "access_key":
			hint = fmt.Sprintf("check access_key and secret_key, and that they may read namespace %q", ns)
		}
		// Nacos answers 403 to unknown users and wrong passwords too: only
		// a refusal that names no credential problem is a user's missing
		// permission.
		kind := upstreams.KindUnauthorized
		if w.c.auth != "" && has("no right", "access denied", "forbidden", "authorization failed") &&
			!has("user not found", "unknown user", "token invalid", "token expired", "invalid username", "password") {
			kind = upstreams.KindForbidden
		}
		return upstreams.Problem(kind, fmt.Errorf("%s rejected the credentials subscribing to service %s: %s: %w", w.c.where, w.ref, hint, err))
	case has("namespace") && has("not exist", "not found", "invalid", "illegal"):
		return upstreams.Problem(upstreams.KindNotFound,
			fmt.Errorf("%s: namespace %q does not exist; use the namespace ID (not its display name): %w", w.c.where, ns, err))
	}
	return fmt.Errorf("%s: subscribing to service %s: %w", w.c.where, w.ref, err)
}

// diagnose finds out why the service has no instances at all: it does not
// exist in the group, or the namespace or group holds no service (a wrong
// namespace ID). It runs on the subscription's goroutine, never in the
// callback, and publishes an empty first list that onPush held back.
func (w *subscription) diagnose() {
	w.mu.Lock()
	held := w.held
	w.mu.Unlock()
	if held {
		defer w.release()
	} else if list, ok := w.fan.Last(); !ok || len(list) > 0 {
		return
	}
	if !w.c.healthy.Load() {
		return
	}
	var list model.ServiceList
	err := guard("listing services", func() (err error) {
		list, err = w.c.nc.GetAllServicesInfo(vo.GetAllServiceInfoParam{GroupName: w.ref.Group, PageNo: 1, PageSize: 500})
		return err
	})
	if err != nil {
		return // the plain "no instances" error stands
	}
	ns := w.c.namespace
	if ns == "" {
		ns = "public"
	}
	var d error
	switch {
	case slices.Contains(list.Doms, w.ref.Service):
		return
	case list.Count == 0 && len(list.Doms) == 0:
		d = fmt.Errorf("namespace %q has no services in group %q: check namespace (the namespace ID, not its display name) and group", ns, w.ref.Group)
	default:
		names := list.Doms
		more := ""
		if len(names) > 10 {
			more = fmt.Sprintf(" and %d more", len(names)-10)
			names = names[:10]
		}
		d = fmt.Errorf("service %q is not registered in group %q of namespace %q (services there: %v%s): check the service name and group",
			w.ref.Service, w.ref.Group, ns, names, more)
	}
	w.diagnosis.Store(&problem{err: d})
	if !held {
		w.fan.Relist()
	}
}

// release publishes the empty first list that onPush held back, unless a
// list arrived since.
func (w *subscription) release() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.held {
		w.held = false
		w.fan.List(nil)
	}
}

// silentRefusal is the problem of a successful Subscribe that no instance
// list followed within the server's timeout: the SDK (v2.3.5) drops the
// server's typed refusal of a request (credentials, namespace) and reports
// success.
func (w *subscription) silentRefusal() error {
	ns := w.c.namespace
	if ns == "" {
		ns = "public"
	}
	var check string
	switch w.c.auth {
	case "username":
		check = "check username and password, and"
	case "access_key":
		check = "check access_key and secret_key, and"
	default:
		check = "if the server requires authentication, set username and password (or access_key and secret_key); check"
	}
	return upstreams.Problem(upstreams.KindRefused, fmt.Errorf("%s: subscribed to service %s but the server sent no instance list within %s: it may have refused the request; "+
		"%s that namespace %q exists (use its ID, not its display name)", w.c.where, w.ref, w.c.timeout(), check, ns))
}

// noTargets says why the service has no usable instance among skip.total
// that f selected from.
func (w *subscription) noTargets(f filter, skip skipped) error {
	if skip.total > 0 {
		sel := ""
		if s := f.String(); s != "" {
			sel = " (selecting " + s + ")"
		}
		return upstreams.Problem(upstreams.NotSelected(skip.total, skip.marked),
			fmt.Errorf("%s: service %s has no usable instance%s: of %d, %s", w.c.where, w.ref, sel, skip.total, skip))
	}
	if d := w.diagnosis.Load(); d != nil {
		// the service, or anything in the namespace and group, is not there
		return upstreams.Problem(upstreams.KindNotFound, fmt.Errorf("%s: service %s has no instances: %w", w.c.where, w.ref, d.err))
	}
	return upstreams.Problem(upstreams.KindNoBackends, fmt.Errorf("%s: service %s has no instances", w.c.where, w.ref))
}
