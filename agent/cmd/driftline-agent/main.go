// Command driftline-agent is the Driftline edge agent. See agent/cli and docs/agent-config.md.
package main

import (
	"os"

	"github.com/driftline/driftline/agent/cli"
)

func main() {
	os.Exit(cli.Main(os.Args[1:], os.Stdout, os.Stderr))
}
