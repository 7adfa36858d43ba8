package selection

import (
	"fmt"
	"net/http"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"
)

// BenchmarkSelect times one Select of registry_weighted beside Caddy's
// round_robin, weighted_round_robin and random, over pools of 1, 10 and 100
// available upstreams weighted 1, 2, 7, 1, 2, 7, ... (registry weights for
// registry_weighted, the same weights by position for weighted_round_robin):
// "upstreams=N/policy" with one caller, "upstreams=N/policy/parallel" with
// GOMAXPROCS callers (b.RunParallel) sharing the policy.
//
//	go test -run '^$' -bench . -benchmem -count 5 ./selection/
func BenchmarkSelect(b *testing.B) {
	req, _ := http.NewRequest(http.MethodGet, "/", nil)
	for _, n := range []int{1, 10, 100} {
		weights := make([]float64, n)
		ints := make([]int, n)
		for i := range weights {
			ints[i] = []int{1, 2, 7}[i%3]
			weights[i] = float64(ints[i])
		}
		svc := publish(b, weights...)
		p := pool(svc.dials...)
		policies := []struct {
			name string
			new  func() reverseproxy.Selector
		}{
			{"registry_weighted", func() reverseproxy.Selector { return new(RegistryWeightedSelection) }},
			{"weighted_round_robin", func() reverseproxy.Selector {
				s := &reverseproxy.WeightedRoundRobinSelection{Weights: ints}
				if err := s.Provision(caddy.Context{}); err != nil {
					b.Fatal(err)
				}
				return s
			}},
			{"round_robin", func() reverseproxy.Selector { return new(reverseproxy.RoundRobinSelection) }},
			{"random", func() reverseproxy.Selector { return new(reverseproxy.RandomSelection) }},
		}
		for _, pol := range policies {
			b.Run(fmt.Sprintf("upstreams=%d/%s", n, pol.name), func(b *testing.B) {
				s := pol.new()
				b.ReportAllocs()
				for b.Loop() {
					if s.Select(p, req, nil) == nil {
						b.Fatal("nothing selected")
					}
				}
			})
		}
		for _, pol := range policies {
			b.Run(fmt.Sprintf("upstreams=%d/%s/parallel", n, pol.name), func(b *testing.B) {
				s := pol.new()
				b.ReportAllocs()
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						if s.Select(p, req, nil) == nil {
							b.Error("nothing selected")
							return
						}
					}
				})
			})
		}
	}
}
