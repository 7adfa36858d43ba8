// Command backend is the demo's stand-in for a service instance: a tiny HTTP
// server that answers every request with its name. integration/demo.sh runs
// one per Kubernetes Pod and per Nacos instance, inside a network namespace.
//
// As a Pod's container (run with `ip netns exec`; the demo registers the Pod):
//
//	backend -name web-1 -listen 10.252.0.11:8080
//
// As a service that registers itself in Nacos: it stays in the root network
// namespace (where the Nacos server is, on 127.0.0.1) and opens only its
// listener inside -netns; it registers -listen as an ephemeral instance and
// deregisters on SIGTERM or SIGINT. An ephemeral instance also goes away when
// the process dies without deregistering: its gRPC connection closes.
//
//	backend -name shop-api-1 -netns cd-demo -listen 10.252.0.21:8080 \
//	        -nacos 127.0.0.1:8848 -service shop-api -metadata version=v1 -nacos-dir DIR
package main

import (
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/nacos-group/nacos-sdk-go/v2/clients"
	"github.com/nacos-group/nacos-sdk-go/v2/common/constant"
	"github.com/nacos-group/nacos-sdk-go/v2/vo"

	"github.com/caddy-discovery/caddy-discovery/integration/netns"
)

func main() {
	name := flag.String("name", "backend", "name to answer with")
	listen := flag.String("listen", "127.0.0.1:8080", "address to listen on (ip:port)")
	netns := flag.String("netns", "", "network namespace (in /run/netns) to open the listener in; the process stays in its own")
	nacosAddr := flag.String("nacos", "", "Nacos server host:port (HTTP port; gRPC is +1000) to register in; none if empty")
	service := flag.String("service", "shop-api", "Nacos service name")
	group := flag.String("group", "DEFAULT_GROUP", "Nacos group")
	weight := flag.Float64("weight", 1, "Nacos instance weight")
	metadata := flag.String("metadata", "", "Nacos instance metadata, key=value[,key=value...]")
	nacosDir := flag.String("nacos-dir", "", "directory for the Nacos SDK's log and cache (required with -nacos)")
	flag.Parse()
	log.SetPrefix(*name + ": ")

	ln, err := listenIn(*netns, *listen)
	if err != nil {
		log.Fatal(err)
	}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Backend", *name)
		fmt.Fprintln(w, *name)
	})
	srv := &http.Server{Handler: h}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	log.Printf("listening on %s%s", *listen, map[bool]string{true: " in netns " + *netns}[*netns != ""])

	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	var deregister func()
	if *nacosAddr != "" {
		if *nacosDir == "" {
			log.Fatal("-nacos needs -nacos-dir")
		}
		md, err := parseMetadata(*metadata)
		if err != nil {
			log.Fatal(err)
		}
		deregister, err = register(*nacosAddr, *nacosDir, *listen, vo.RegisterInstanceParam{
			ServiceName: *service, GroupName: *group, ClusterName: "DEFAULT", Weight: *weight, Metadata: md,
			Enable: true, Healthy: true, Ephemeral: true,
		})
		if err != nil {
			log.Fatal(err)
		}
	}

	select {
	case err := <-served:
		log.Fatal(err)
	case s := <-stop:
		log.Printf("%v: stopping", s)
	}
	if deregister != nil {
		deregister()
	}
	_ = srv.Close()
}

// listenIn opens a TCP listener on addr inside the network namespace netns,
// or in the current one if netns is empty. The process, its Nacos client
// included, stays in its own namespace.
func listenIn(ns, addr string) (net.Listener, error) {
	if ns == "" {
		return net.Listen("tcp", addr)
	}
	return netns.Listen(ns, addr)
}

func parseMetadata(s string) (map[string]string, error) {
	md := map[string]string{}
	for kv := range strings.SplitSeq(s, ",") {
		if kv == "" {
			continue
		}
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("-metadata: %q is not key=value", kv)
		}
		md[k] = v
	}
	return md, nil
}

// register registers the instance at listen (ip:port) with its own naming
// client, and returns the function that deregisters it and closes the client.
func register(server, dir, listen string, p vo.RegisterInstanceParam) (func(), error) {
	host, port, err := splitHostPort(server)
	if err != nil {
		return nil, fmt.Errorf("-nacos: %w", err)
	}
	ip, iport, err := splitHostPort(listen)
	if err != nil {
		return nil, fmt.Errorf("-listen: %w", err)
	}
	c, err := clients.NewNamingClient(vo.NacosClientParam{
		ClientConfig: &constant.ClientConfig{
			TimeoutMs: 5000, NotLoadCacheAtStart: true, LogLevel: "warn",
			CacheDir: dir + "/cache", LogDir: dir + "/log",
		},
		ServerConfigs: []constant.ServerConfig{{IpAddr: host, Port: port}},
	})
	if err != nil {
		return nil, fmt.Errorf("nacos client: %w", err)
	}
	// The test server (Polaris) rejects the SDK's duplicate first re-send of a
	// registration made right after connecting; (false, nil) means just that.
	time.Sleep(50 * time.Millisecond)
	p.Ip, p.Port = ip, iport
	for i := 0; ; i++ {
		ok, err := c.RegisterInstance(p)
		if ok || err == nil {
			break
		}
		if i == 2 {
			c.CloseClient()
			return nil, fmt.Errorf("registering %s in %s@@%s: %w", listen, p.GroupName, p.ServiceName, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	log.Printf("registered %s in Nacos %s as %s@@%s (weight %g, metadata %v, ephemeral)",
		listen, server, p.GroupName, p.ServiceName, p.Weight, p.Metadata)
	return func() {
		if _, err := c.DeregisterInstance(vo.DeregisterInstanceParam{
			Ip: p.Ip, Port: p.Port, Cluster: p.ClusterName, ServiceName: p.ServiceName, GroupName: p.GroupName, Ephemeral: true,
		}); err != nil {
			log.Printf("deregistering: %v", err)
		} else {
			log.Printf("deregistered from Nacos")
		}
		c.CloseClient()
	}, nil
}

func splitHostPort(s string) (string, uint64, error) {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return "", 0, err
	}
	n, err := strconv.ParseUint(port, 10, 16)
	if err != nil || n == 0 {
		return "", 0, errors.Join(fmt.Errorf("bad port in %q", s), err)
	}
	return host, n, nil
}
