package nacos

import (
	"github.com/nacos-group/nacos-sdk-go/v2/clients/naming_client/naming_cache"
	"github.com/nacos-group/nacos-sdk-go/v2/model"
	"github.com/nacos-group/nacos-sdk-go/v2/util"
	"github.com/nacos-group/nacos-sdk-go/v2/vo"
)

// The SDK keeps every subscribed service's last list, decoded, in its
// ServiceInfoHolder, beside the copy our subscription hands its sources;
// and after every list it processes it counts that whole cache for a gauge
// (ServiceInfoHolder.ProcessService in v2.3.5): at 10,000 services that
// count took two thirds of Caddy's CPU per change. We read the lists
// through our callback only, so sdkCache empties the SDK's cache after
// each list (trim), keeping of each service only what the SDK used it
// for besides our callback: the time of its newest list, below which the
// SDK drops a late push (stale).
//
// Without its entry the SDK calls back on every list, changed or not, and
// a Subscribe always asks the server, as ours do anyway (they follow an
// Unsubscribe). All of it runs under the client's sdk mutex, like the
// SDK's processing of pushes (see serialize).
type sdkCache struct {
	holder *naming_cache.ServiceInfoHolder
	// newest holds, per subscribed service (the SDK's cache key), the
	// LastRefTime of the newest list processed; 0 before the first.
	newest map[string]uint64
}

func newSDKCache(holder *naming_cache.ServiceInfoHolder) *sdkCache {
	return &sdkCache{holder: holder, newest: make(map[string]uint64)}
}

// cacheKey is the SDK's key of the service a subscription follows: it
// subscribes without clusters, and filters them itself.
func cacheKey(p *vo.SubscribeParam) string {
	return util.GetServiceCacheKey(util.GetGroupName(p.ServiceName, p.GroupName), "")
}

// subscribed notes a service subscribed to.
func (s *sdkCache) subscribed(p *vo.SubscribeParam) {
	if _, ok := s.newest[cacheKey(p)]; !ok {
		s.newest[cacheKey(p)] = 0
	}
}

// unsubscribed forgets a service; a re-subscription that follows learns
// its time again from the server's answer.
func (s *sdkCache) unsubscribed(p *vo.SubscribeParam) { delete(s.newest, cacheKey(p)) }

// stale reports whether a pushed list is no newer than one already
// processed, which the SDK would drop (it compares LastRefTime with its
// cached list's).
func (s *sdkCache) stale(svc *model.Service) bool {
	key := util.GetServiceCacheKey(util.GetGroupName(svc.Name, svc.GroupName), svc.Clusters)
	t := s.newest[key]
	return t != 0 && t >= svc.LastRefTime
}

// trim empties the SDK's cache, noting the time of each subscribed
// service's list. It holds at most the lists processed since the last
// trim: one, or those of a reconnect's re-subscriptions.
func (s *sdkCache) trim() {
	s.holder.ServiceInfoMap.Range(func(k, v any) bool {
		key, _ := k.(string)
		if t, ok := s.newest[key]; ok {
			if svc, ok := v.(model.Service); ok && svc.LastRefTime > t {
				s.newest[key] = svc.LastRefTime
			}
		}
		s.holder.ServiceInfoMap.Delete(k)
		s.holder.UpdateTimeMap.Delete(k)
		return true
	})
}

// trimmed is an SDK naming client whose cache is trimmed after each
// Subscribe and Unsubscribe. Its callers hold the client's sdk mutex.
type trimmed struct {
	namingClient
	cache *sdkCache
}

func (c trimmed) Subscribe(p *vo.SubscribeParam) error {
	c.cache.subscribed(p)
	err := c.namingClient.Subscribe(p)
	c.cache.trim()
	return err
}

func (c trimmed) Unsubscribe(p *vo.SubscribeParam) error {
	err := c.namingClient.Unsubscribe(p)
	c.cache.unsubscribed(p)
	c.cache.trim()
	return err
}
