// Command consul is Consul v1.14.8 with only its agent and version commands,
// for the integration tests of caddy-discovery (see build-consul.sh).
//
// It is consul's own main.go with a two-entry command table instead of
// command.RegisteredCommands: that registry imports every CLI command, and
// command/operator/raft/listpeers does not compile against the published
// github.com/hashicorp/consul/api module (consul's go.mod replaces it with
// ./api, a replace that does not apply when consul is a dependency).
package main

import (
	"fmt"
	"io"
	"log"
	"os"

	"github.com/hashicorp/consul/command/agent"
	"github.com/hashicorp/consul/command/cli"
	"github.com/hashicorp/consul/command/version"
	mcli "github.com/mitchellh/cli"
)

func main() {
	os.Exit(realMain())
}

func realMain() int {
	// As consul's main.go: everything logs through the agent's own logger.
	log.SetOutput(io.Discard)

	ui := &cli.BasicUI{
		BasicUi: mcli.BasicUi{Writer: os.Stdout, ErrorWriter: os.Stderr},
	}
	cmds := map[string]mcli.CommandFactory{
		"agent":   func() (mcli.Command, error) { return agent.New(ui), nil },
		"version": func() (mcli.Command, error) { return version.New(ui), nil },
	}
	c := &mcli.CLI{
		Args:        os.Args[1:],
		Commands:    cmds,
		Name:        "consul",
		HelpFunc:    mcli.BasicHelpFunc("consul"),
		HelpWriter:  os.Stdout,
		ErrorWriter: os.Stderr,
	}
	if c.IsVersion() {
		return version.New(ui).Run(nil)
	}
	code, err := c.Run()
	if err != nil {
		fmt.Fprintf(os.Stderr, "error executing the consul command: %v\n", err)
		return 1
	}
	return code
}
