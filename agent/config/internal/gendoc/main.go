// Command gendoc writes docs/agent-config.md from the agent's Config struct:
// `go generate ./agent/config`.
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/driftline/driftline/agent/config"
)

func main() {
	out := flag.String("o", "docs/agent-config.md", "file to write")
	flag.Parse()
	if err := os.WriteFile(*out, []byte(config.Markdown()), 0o644); err != nil {
		fmt.Fprintln(os.Stderr, "gendoc:", err)
		os.Exit(1)
	}
}
