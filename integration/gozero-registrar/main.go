// Command gozero-registrar registers one instance the way a go-zero service
// does: github.com/zeromicro/go-zero/core/discov's Publisher, which puts the
// address under <key>/<lease ID> with a lease it keeps alive. The etcd
// source's integration tests run it to read what go-zero really writes, and
// kill it to see the lease expire:
//
//	gozero-registrar -etcd 127.0.0.1:2379 -key user.rpc -value 10.0.0.1:8080
//
// It prints "registered" once the key is written, then runs until killed.
package main

import (
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/zeromicro/go-zero/core/discov"
	"github.com/zeromicro/go-zero/core/logx"
)

func main() {
	endpoints := flag.String("etcd", "127.0.0.1:2379", "etcd endpoints, comma-separated")
	key := flag.String("key", "", "the service's key, as go-zero's etcd.Key")
	value := flag.String("value", "", "the address to register, host:port")
	ttl := flag.Int64("ttl", 0, "the lease's TTL in seconds (0: go-zero's default)")
	flag.Parse()
	if *key == "" || *value == "" {
		flag.Usage()
		os.Exit(2)
	}
	logx.Disable()
	if *ttl > 0 {
		discov.TimeToLive = *ttl
	}
	pub := discov.NewPublisher(strings.Split(*endpoints, ","), *key, *value)
	if err := pub.KeepAlive(); err != nil {
		fmt.Fprintln(os.Stderr, "registering:", err)
		os.Exit(1)
	}
	fmt.Println("registered")
	select {}
}
