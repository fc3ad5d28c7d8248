// Command firmware-sim simulates sensor firmware (run) and fleets of real agents (fleet) for
// Driftline. See firmware-sim/cli and docs/firmware-sim.md.
package main

import (
	"os"

	"github.com/driftline/driftline/firmware-sim/cli"
)

func main() {
	os.Exit(cli.Main(os.Args[1:], os.Stdout, os.Stderr))
}
