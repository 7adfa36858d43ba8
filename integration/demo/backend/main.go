// Command backend is the demo's stand-in for a Pod: a tiny HTTP server that
// answers every request with its name. integration/demo.sh runs one per Pod
// inside a network namespace, on the Pod's IP.
//
//	backend -name web-1 -listen 10.252.0.11:8080
package main

import (
	"flag"
	"fmt"
	"log"
	"net/http"
)

func main() {
	name := flag.String("name", "backend", "name to answer with")
	listen := flag.String("listen", "127.0.0.1:8080", "address to listen on")
	flag.Parse()
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Backend", *name)
		fmt.Fprintln(w, *name)
	})
	log.Fatal(http.ListenAndServe(*listen, h))
}
