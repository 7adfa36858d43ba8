//go:build integration

package integration

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/caddy-discovery/caddy-discovery/integration/harness"
)

// inPod runs a command as if in a Pod: in a mount namespace of its own, with
// dir bind-mounted read-only on /var/run/secrets/kubernetes.io/serviceaccount
// as the kubelet mounts the projected service account volume. /run (which
// /var/run points to) is a fresh tmpfs there, so nothing is created on the
// host. Arguments after the wrapper are executed in place of sh.
func inPod(dir string) []string {
	const script = `set -e
mount -t tmpfs -o size=1m,mode=0755 tmpfs /run
mkdir -p /run/secrets/kubernetes.io/serviceaccount
mount --bind "$1" /run/secrets/kubernetes.io/serviceaccount
mount -o remount,bind,ro /run/secrets/kubernetes.io/serviceaccount
shift
exec "$@"`
	return []string{"unshare", "--mount", "--propagation", "private", "sh", "-c", script, "in-pod", dir}
}

// projectedVolume is a directory laid out as the kubelet writes a projected
// service account volume (AtomicWriter): the files live in a timestamped
// directory, ..data is a symlink to it, and token, ca.crt and namespace are
// symlinks into ..data. An update writes a new timestamped directory and
// renames a new symlink over ..data, so a reader sees either all old files
// or all new ones.
type projectedVolume struct {
	dir string
	seq int
}

func (v *projectedVolume) write(t testing.TB, files map[string]string) {
	t.Helper()
	v.seq++
	ts := fmt.Sprintf("..%s.%09d", time.Now().UTC().Format("2006_01_02_15_04_05"), v.seq)
	if err := os.Mkdir(filepath.Join(v.dir, ts), 0o755); err != nil {
		t.Fatal(err)
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(v.dir, ts, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	old, _ := os.Readlink(filepath.Join(v.dir, "..data"))
	if err := os.Symlink(ts, filepath.Join(v.dir, "..data_tmp")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(v.dir, "..data_tmp"), filepath.Join(v.dir, "..data")); err != nil {
		t.Fatal(err)
	}
	for name := range files {
		link := filepath.Join(v.dir, name)
		if _, err := os.Lstat(link); os.IsNotExist(err) {
			if err := os.Symlink(filepath.Join("..data", name), link); err != nil {
				t.Fatal(err)
			}
		}
	}
	if old != "" {
		if err := os.RemoveAll(filepath.Join(v.dir, old)); err != nil {
			t.Fatal(err)
		}
	}
}

// siteSpread sends n requests to a Caddy site and counts the answers per
// backend name; errors are counted under "error: ...".
func siteSpread(site string, n int) map[string]int {
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	got := map[string]int{}
	for range n {
		name := func() string {
			resp, err := client.Get("http://" + site + "/")
			if err != nil {
				return "error: " + err.Error()
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != http.StatusOK {
				return fmt.Sprintf("error: status %d: %s", resp.StatusCode, strings.TrimSpace(string(body)))
			}
			return string(body)
		}()
		got[name]++
	}
	return got
}

func expectSite(t testing.TB, site string, timeout time.Duration, want ...string) {
	t.Helper()
	harness.Eventually(t, timeout, func() error {
		got := siteSpread(site, 6*len(want))
		if names := harness.Names(got); strings.Join(names, ",") != strings.Join(want, ",") {
			return fmt.Errorf("requests reached %v, want exactly %v", got, want)
		}
		return nil
	})
}

// TestKubernetesInCluster: Caddy runs as it would in a Pod, with its
// service account's token, the API server's CA and its namespace mounted at
// /var/run/secrets/kubernetes.io/serviceaccount and KUBERNETES_SERVICE_HOST
// and _PORT set, and a source with no connection fields and no namespace:
// `dynamic k8s web:http`. It finds the Service in the service account's
// namespace. The kubelet then rotates the token (a new ..data directory) and
// the old token is revoked; once every connection to the API server has been
// cut, the watches come back with the new token, without a reload, and
// follow changes again.
func TestKubernetesInCluster(t *testing.T) {
	const ns = "incluster"
	k, net := webSetup(t, ns)
	readyPod(t, k, net, ns, "pod0")
	ip1 := net.AddAddr(t)
	net.Backend(t, "pod1", ip1, 8080)

	// The Pod's service account, with the Role the source needs, and two
	// tokens bound to two Secrets: deleting a Secret revokes its token.
	cs := k.Client
	if _, err := cs.CoreV1().ServiceAccounts(ns).Create(t.Context(), &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "caddy"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	grantDiscovery(t, k, ns, rbacv1.Subject{Kind: "ServiceAccount", Name: "caddy", Namespace: ns})
	mint := func(secret string) string {
		s, err := cs.CoreV1().Secrets(ns).Create(t.Context(), &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: secret}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		tr, err := cs.CoreV1().ServiceAccounts(ns).CreateToken(t.Context(), "caddy", &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{
			BoundObjectRef: &authenticationv1.BoundObjectReference{Kind: "Secret", APIVersion: "v1", Name: secret, UID: s.UID},
		}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return tr.Status.Token
	}
	oldToken, newToken := mint("token-1"), mint("token-2")
	ca, err := os.ReadFile(k.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	vol := &projectedVolume{dir: t.TempDir()}
	vol.write(t, map[string]string{"token": oldToken, "ca.crt": string(ca), "namespace": ns})

	// KUBERNETES_SERVICE_HOST/PORT point at the API server through a proxy
	// that can cut the connections, as a Pod reaches it through the
	// kubernetes Service.
	apiserver := strings.TrimPrefix(k.Server, "https://")
	proxy := harness.NewForwarder(t, apiserver)

	dir := t.TempDir()
	admin, site := freeAddr(t), freeAddr(t)
	config := filepath.Join(dir, "caddy.json")
	if err := os.WriteFile(config, []byte(fmt.Sprintf(`{
		"admin": {"listen": %q},
		"logging": {"logs": {"default": {"level": "INFO"}}},
		"apps": {"http": {"servers": {"incluster": {"listen": [%q], "automatic_https": {"disable": true},
			"routes": [{"handle": [%s]}]}}}}
	}`, admin, site, k8sProxy(map[string]any{"service": "web:http"}))), 0o600); err != nil {
		t.Fatal(err)
	}
	bin := harness.BuildCaddy(t)
	start := time.Now()
	proc := harness.StartProcessWrapped(t, inPod(vol.dir), bin, config, admin,
		"KUBERNETES_SERVICE_HOST=127.0.0.1", "KUBERNETES_SERVICE_PORT="+strconv.Itoa(proxy.Port()), "KUBECONFIG=", "POD_NAMESPACE=")
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("caddy's output:\n%s", proc.Output)
		}
	})
	expectSite(t, site, 15*time.Second, "pod0")
	t.Logf("in-cluster: web:http served from namespace %s %v after start, over %d connection(s) through KUBERNETES_SERVICE_HOST/PORT",
		ns, time.Since(start).Round(time.Millisecond), proxy.Accepted())
	if proxy.Accepted() == 0 {
		t.Fatal("caddy reached the API server without going through KUBERNETES_SERVICE_HOST/PORT")
	}

	// Rotation, as the kubelet does it, then revocation of the old token.
	vol.write(t, map[string]string{"token": newToken, "ca.crt": string(ca), "namespace": ns})
	if err := cs.CoreV1().Secrets(ns).Delete(t.Context(), "token-1", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	oldClient, err := kubernetes.NewForConfig(&rest.Config{Host: k.Server, BearerToken: oldToken, TLSClientConfig: rest.TLSClientConfig{CAFile: k.CAFile}})
	if err != nil {
		t.Fatal(err)
	}
	harness.Eventually(t, 30*time.Second, func() error {
		if _, err := oldClient.CoreV1().Services(ns).List(t.Context(), metav1.ListOptions{}); !apierrors.IsUnauthorized(err) {
			return fmt.Errorf("the revoked token still lists services: %v", err)
		}
		return nil
	})

	// Every watch must now reconnect, and can only do so with the new token.
	before := len(proc.Output.String())
	rotated := time.Now()
	cut := proxy.Cut()
	if cut == 0 {
		t.Fatal("no connection to the API server was open to cut")
	}
	connected := proxy.Accepted()
	if got := siteSpread(site, 20); got["pod0"] != 20 {
		t.Fatalf("after the connections were cut, requests must keep reaching the last known pod: %v", got)
	}
	k.Pod(t, ns, "pod1", ns+"-node", appWeb, ip1, true)
	expectSite(t, site, 30*time.Second, "pod0", "pod1")
	t.Logf("after the rotation and the cut of %d connection(s), pod1 served %v later, over %d new connection(s)",
		cut, time.Since(rotated).Round(time.Millisecond), proxy.Accepted()-connected)
	if proxy.Accepted() == connected {
		t.Fatal("no new connection to the API server since the cut: the watches did not reconnect")
	}

	out := proc.Output.String()
	for _, bad := range []string{"401", "Unauthorized"} {
		if strings.Contains(out[before:], bad) {
			t.Errorf("caddy's output after the rotation has %q: the new token was not used", bad)
		}
	}
	for name, tok := range map[string]string{"old token": oldToken, "new token": newToken} {
		if strings.Contains(out, tok) {
			t.Errorf("caddy's output shows the %s", name)
		}
	}
	proc.Stop(t)
}
