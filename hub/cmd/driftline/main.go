// Command driftline runs a Driftline hub (`driftline hub serve`) and is the command-line client
// of its HTTP API. See docs/cli.md.
package main

import (
	"os"

	"github.com/driftline/driftline/hub/cli"
)

func main() {
	os.Exit(cli.Execute())
}
