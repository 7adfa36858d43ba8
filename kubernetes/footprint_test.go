package kubernetes

import (
	"fmt"
	"runtime"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"
)

// BenchmarkCacheFootprint reports the live heap that one cached endpoint
// costs: 10,000 Services with an EndpointSlice of 10 endpoints each, as the
// EndpointSlice controller writes them (conditions, node, zone, a Pod
// reference), decoded from protobuf as a watch delivers them, transformed
// and stored in an indexer as the informers do. The scale benchmark
// measures the same in a running Caddy, against a real API server.
//
//	go test -run '^$' -bench CacheFootprint -benchtime 1x ./kubernetes/
func BenchmarkCacheFootprint(b *testing.B) {
	const n, perSlice = 10000, 10
	heap := func() uint64 {
		runtime.GC()
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	// wire is an object as the API server sends it: decoding allocates
	// every field anew, as a watch does.
	wire := func(m interface{ Marshal() ([]byte, error) }) []byte {
		data, err := m.Marshal()
		if err != nil {
			b.Fatal(err)
		}
		return data
	}
	svcWire, sliceWire := make([][]byte, n), make([][]byte, n)
	for i := range n {
		name := fmt.Sprintf("s%04d", i)
		svcWire[i] = wire(&corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Namespace: "scale-00", Name: name, UID: types.UID(fmt.Sprintf("%08x-0000-4000-8000-000000000000", i)), ResourceVersion: fmt.Sprint(1000 + i)},
			Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeClusterIP, ClusterIP: fmt.Sprintf("10.96.%d.%d", i/256, i%256), Ports: []corev1.ServicePort{{
				Name: "http", Port: 80, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromInt32(8080),
			}}},
		})
		eps := make([]discoveryv1.Endpoint, perSlice)
		for k := range eps {
			g := i*perSlice + k
			eps[k] = discoveryv1.Endpoint{
				Addresses:  []string{fmt.Sprintf("10.%d.%d.%d", 100+g>>16, g>>8&255, g&255)},
				Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true), Serving: ptr.To(true), Terminating: ptr.To(false)},
				NodeName:   ptr.To(fmt.Sprintf("node-%03d", g%200)),
				Zone:       ptr.To(fmt.Sprintf("zone-%c", 'a'+g%3)),
				TargetRef:  &corev1.ObjectReference{Kind: "Pod", Namespace: "scale-00", Name: fmt.Sprintf("%s-7d9f8b6c5-%05d", name, k)},
			}
		}
		sliceWire[i] = wire(&discoveryv1.EndpointSlice{
			ObjectMeta: metav1.ObjectMeta{Namespace: "scale-00", Name: name + "-x7k2p", UID: types.UID(fmt.Sprintf("%08x-0000-4000-8000-000000000001", i)), ResourceVersion: fmt.Sprint(50000 + i),
				Labels:      map[string]string{discoveryv1.LabelServiceName: name, discoveryv1.LabelManagedBy: "endpointslice-controller.k8s.io"},
				Annotations: map[string]string{corev1.EndpointsLastChangeTriggerTime: "2026-12-05T10:00:00Z"}},
			AddressType: discoveryv1.AddressTypeIPv4,
			Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To[int32](8080), Protocol: ptr.To(corev1.ProtocolTCP)}},
			Endpoints:   eps,
		})
	}
	for b.Loop() {
		before := heap()
		svcs := cache.NewIndexer(cache.DeletionHandlingMetaNamespaceKeyFunc, nil)
		slices := cache.NewIndexer(cache.DeletionHandlingMetaNamespaceKeyFunc, endpointSlices.indexers())
		for i := range n {
			svc, es := new(corev1.Service), new(discoveryv1.EndpointSlice)
			if err := svc.Unmarshal(svcWire[i]); err != nil {
				b.Fatal(err)
			}
			if err := es.Unmarshal(sliceWire[i]); err != nil {
				b.Fatal(err)
			}
			for _, add := range []struct {
				store cache.Indexer
				r     resource
				obj   any
			}{{svcs, services, svc}, {slices, endpointSlices, es}} {
				obj, err := add.r.transform(add.obj)
				if err != nil {
					b.Fatal(err)
				}
				if err := add.store.Add(obj); err != nil {
					b.Fatal(err)
				}
			}
		}
		after := heap()
		b.ReportMetric(float64(after-before)/(n*perSlice), "B/endpoint")
		runtime.KeepAlive(svcs)
		runtime.KeepAlive(slices)
	}
}
