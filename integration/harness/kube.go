package harness

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// ScriptDir is the integration/ directory that holds the server scripts.
func ScriptDir() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..")
}

// Kube is a real local control plane: etcd, kube-apiserver and
// kube-controller-manager, started by integration/start-kube.sh.
type Kube struct {
	Dir             string
	Server          string // https://127.0.0.1:port
	CAFile          string
	AdminToken      string
	RestrictedToken string
	Client          kubernetes.Interface // as admin
}

// StartKube starts a control plane with its apiserver on port and etcd on
// etcdPort, both on 127.0.0.1. Stop it with Stop.
func StartKube(dir string, port, etcdPort int) (*Kube, error) {
	if err := CheckPorts(port, etcdPort, etcdPort+1); err != nil {
		return nil, err
	}
	cmd := exec.Command("bash", filepath.Join(ScriptDir(), "start-kube.sh"), dir)
	cmd.Env = append(os.Environ(), "KUBE_PORT="+strconv.Itoa(port), "ETCD_PORT="+strconv.Itoa(etcdPort), "KCM_PORT=0")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("start-kube.sh %s: %w", dir, err)
	}
	read := func(name string) string {
		b, _ := os.ReadFile(filepath.Join(dir, name))
		return strings.TrimSpace(string(b))
	}
	k := &Kube{
		Dir:             dir,
		Server:          fmt.Sprintf("https://127.0.0.1:%d", port),
		CAFile:          filepath.Join(dir, "ca.crt"),
		AdminToken:      read("admin.token"),
		RestrictedToken: read("restricted.token"),
	}
	client, err := kubernetes.NewForConfig(&rest.Config{Host: k.Server, BearerToken: k.AdminToken,
		TLSClientConfig: rest.TLSClientConfig{CAFile: k.CAFile}})
	if err != nil {
		return nil, err
	}
	k.Client = client
	return k, nil
}

// Stop stops the control plane.
func (k *Kube) Stop() error {
	cmd := exec.Command("bash", filepath.Join(ScriptDir(), "stop-kube.sh"), k.Dir)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	return cmd.Run()
}

var ctx = context.Background()

// Namespace creates a namespace, and deletes it (with its pods) when the test ends.
func (k *Kube) Namespace(t testing.TB, name string) {
	t.Helper()
	if _, err := k.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// pods on nodes without a kubelet only go away with grace period 0
		_ = k.Client.CoreV1().Pods(name).DeleteCollection(ctx, metav1.DeleteOptions{GracePeriodSeconds: new(int64)}, metav1.ListOptions{})
		_ = k.Client.CoreV1().Namespaces().Delete(ctx, name, metav1.DeleteOptions{})
	})
}

// Node creates a Node in zone with an InternalIP (and ExternalIP if valid).
func (k *Kube) Node(t testing.TB, name, zone string, internal, external netip.Addr) {
	t.Helper()
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"topology.kubernetes.io/zone": zone}}}
	n, err := k.Client.CoreV1().Nodes().Create(ctx, n, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = k.Client.CoreV1().Nodes().Delete(ctx, name, metav1.DeleteOptions{}) })
	n.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: internal.String()}}
	if external.IsValid() {
		n.Status.Addresses = append(n.Status.Addresses, corev1.NodeAddress{Type: corev1.NodeExternalIP, Address: external.String()})
	}
	n.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue, LastHeartbeatTime: metav1.Now()}}
	if _, err := k.Client.CoreV1().Nodes().UpdateStatus(ctx, n, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// Pod creates a running Pod with labels on node, with podIP ip and the given
// readiness, as a kubelet would report it.
func (k *Kube) Pod(t testing.TB, ns, name, node string, labels map[string]string, ip netip.Addr, ready bool) {
	t.Helper()
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: labels},
		Spec: corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{
			Name: "web", Image: "example.invalid/web",
			Ports: []corev1.ContainerPort{{Name: "web", ContainerPort: 8080}},
		}}},
	}
	if _, err := k.Client.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	k.setPodStatus(t, ns, name, ip, ready)
}

// SetReady flips a Pod's Ready condition.
func (k *Kube) SetReady(t testing.TB, ns, name string, ready bool) {
	t.Helper()
	p, err := k.Client.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ip, _ := netip.ParseAddr(p.Status.PodIP)
	k.setPodStatus(t, ns, name, ip, ready)
}

func (k *Kube) setPodStatus(t testing.TB, ns, name string, ip netip.Addr, ready bool) {
	t.Helper()
	p, err := k.Client.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	status := corev1.ConditionFalse
	if ready {
		status = corev1.ConditionTrue
	}
	p.Status.Phase = corev1.PodRunning
	p.Status.PodIP = ip.String()
	p.Status.PodIPs = []corev1.PodIP{{IP: ip.String()}}
	p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: status, LastTransitionTime: metav1.Now()}}
	if _, err := k.Client.CoreV1().Pods(ns).UpdateStatus(ctx, p, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// DeletePod removes a Pod at once (grace period 0).
func (k *Kube) DeletePod(t testing.TB, ns, name string) {
	t.Helper()
	if err := k.Client.CoreV1().Pods(ns).Delete(ctx, name, metav1.DeleteOptions{GracePeriodSeconds: new(int64)}); err != nil {
		t.Fatal(err)
	}
}

// Service creates svc.
func (k *Kube) Service(t testing.TB, svc *corev1.Service) *corev1.Service {
	t.Helper()
	svc, err := k.Client.CoreV1().Services(svc.Namespace).Create(ctx, svc, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return svc
}

// Metric reads the sum of a metric family's samples whose labels contain
// every given label="value" pair, from the apiserver's /metrics.
func (k *Kube) Metric(name string, labels ...string) (float64, error) {
	body, err := k.Client.CoreV1().RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
	if err != nil {
		return 0, err
	}
	var sum float64
	for line := range strings.SplitSeq(string(body), "\n") {
		if !strings.HasPrefix(line, name+"{") && !strings.HasPrefix(line, name+" ") {
			continue
		}
		ok := true
		for _, l := range labels {
			ok = ok && strings.Contains(line, l)
		}
		if !ok {
			continue
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err == nil {
			sum += v
		}
	}
	return sum, nil
}

// WaitFor polls until check passes, for at most d.
func WaitFor(d time.Duration, check func() bool) bool {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if check() {
			return true
		}
		time.Sleep(50 * time.Millisecond)
	}
	return check()
}

// Watched lists the request URIs of the lists and watches of services and
// endpointslices that the apiserver's audit log holds (start-kube.sh's
// audit policy), for which keep returns true.
func (k *Kube) Watched(t testing.TB, keep func(uri string) bool) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(k.Dir, "audit.log"))
	if err != nil {
		t.Fatal(err)
	}
	var uris []string
	for line := range strings.SplitSeq(string(b), "\n") {
		var ev struct {
			RequestURI string `json:"requestURI"`
		}
		if line == "" || json.Unmarshal([]byte(line), &ev) != nil {
			continue
		}
		if keep(ev.RequestURI) && !slices.Contains(uris, ev.RequestURI) {
			uris = append(uris, ev.RequestURI)
		}
	}
	return uris
}
