// Command caddy is Caddy with the standard modules and this module's, as
// `xcaddy build --with github.com/caddy-discovery/caddy-discovery` makes it;
// the integration tests build it from the working tree to run a real Caddy
// process.
package main

import (
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	_ "github.com/caddyserver/caddy/v2/modules/standard"

	_ "github.com/caddy-discovery/caddy-discovery"
)

func main() {
	caddycmd.Main()
}
