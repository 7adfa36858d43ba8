package kubernetes

import (
	"errors"
	"fmt"
	"net"
	"regexp"

	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"github.com/caddy-discovery/caddy-discovery/upstreams"
)

var (
	forbiddenUser = regexp.MustCompile(`User "([^"]*)"`)
	forbiddenVerb = regexp.MustCompile(`cannot (\w+) resource`)
)

// explainWatchError turns a failed list or watch into an error that says what
// to fix, marked with its kind for the metrics. It never includes
// credentials: API server errors do not echo them.
func explainWatchError(cluster, namespace string, r resource, err error) error {
	where := "cluster-wide"
	if namespace != "" {
		where = fmt.Sprintf("in namespace %q", namespace)
	}
	switch {
	case apierrors.IsUnauthorized(err):
		return upstreams.Problem(upstreams.KindUnauthorized, fmt.Errorf("kubernetes cluster %q: the API server rejected the credentials (401 Unauthorized) "+
			"while listing %s %s: the token is invalid or expired; check token, token_file or the kubeconfig user of this cluster",
			cluster, r.qualified(), where))
	case apierrors.IsForbidden(err):
		user, verb := "(unknown user)", "list"
		if m := forbiddenUser.FindStringSubmatch(err.Error()); m != nil {
			user = m[1]
		}
		if m := forbiddenVerb.FindStringSubmatch(err.Error()); m != nil {
			verb = m[1]
		}
		grant := fmt.Sprintf("a Role in namespace %q bound to %s", namespace, user)
		if namespace == "" {
			grant = fmt.Sprintf("a ClusterRole bound to %s with a ClusterRoleBinding", user)
		}
		return upstreams.Problem(upstreams.KindForbidden, fmt.Errorf("kubernetes cluster %q: user %q may not %s %s %s (403 Forbidden); add to %s the rule "+
			"{apiGroups: [%q], resources: [%q], verbs: [\"get\", \"list\", \"watch\"]}",
			cluster, user, verb, r.qualified(), where, grant, r.group, r.name))
	case apierrors.IsNotFound(err):
		return upstreams.Problem(upstreams.KindNotFound, fmt.Errorf("kubernetes cluster %q: the API server does not serve %s (404); it needs Kubernetes 1.21 or later: %w",
			cluster, r.qualified(), err))
	}
	var netErr net.Error
	var opErr *net.OpError
	if errors.As(err, &opErr) || errors.As(err, &netErr) {
		return upstreams.Problem(upstreams.KindUnreachable, fmt.Errorf("kubernetes cluster %q: cannot reach the API server: %w", cluster, err))
	}
	return fmt.Errorf("kubernetes cluster %q: listing %s %s: %w", cluster, r.qualified(), where, err)
}
