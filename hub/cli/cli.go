// Package cli is the `driftline` command line: `driftline hub serve` runs a hub node, every
// other command is a client of the hub's HTTP API. Run is the seam tests drive in-process.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
)

// Version is the CLI's version, set at link time with
// -ldflags "-X github.com/driftline/driftline/hub/cli.Version=v1.2.3".
var Version = "dev"

// DefaultHub is the hub URL used when neither --hub nor DRIFTLINE_HUB is set.
const DefaultHub = "http://127.0.0.1:8080"

// DefaultDataDir is the hub's data dir when neither --data nor DRIFTLINE_DATA is set; the
// client reads the admin token from its admin.token.
const DefaultDataDir = "./driftline-data"

// app is one invocation of the command: its streams, environment and global flags.
type app struct {
	ctx    context.Context
	stdout io.Writer
	stderr io.Writer
	getenv func(string) (string, bool)

	hub    string
	token  string
	output string
}

// Execute runs the command with os.Args, stopping on SIGINT/SIGTERM, and returns the exit code.
func Execute() int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return RunContext(ctx, os.Args[1:], os.Stdout, os.Stderr)
}

// Run runs the command with args (without the program name), writing to stdout and stderr, and
// returns the exit code: 0 ok, 1 the hub said no, 2 usage error, 3 hub unreachable or 5xx.
func Run(args []string, stdout, stderr io.Writer) int {
	return RunContext(context.Background(), args, stdout, stderr)
}

// RunContext is Run with a context: cancelling it stops a running `hub serve` cleanly and
// aborts a client request.
func RunContext(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	a := &app{ctx: ctx, stdout: stdout, stderr: stderr, getenv: os.LookupEnv}
	return a.run(args)
}

func (a *app) run(args []string) int {
	root := a.root()
	root.SetArgs(args)
	err := root.ExecuteContext(a.ctx)
	if err != nil {
		fmt.Fprintln(a.stderr, "driftline: "+strings.TrimPrefix(err.Error(), ErrUsage.Error()+": "))
		if code := exitCode(err); code == ExitUsage && !errors.Is(err, ErrUsage) {
			fmt.Fprintln(a.stderr, "Run 'driftline --help' for usage.")
		}
	}
	return exitCode(err)
}

func (a *app) root() *cobra.Command {
	root := &cobra.Command{
		Use:           "driftline",
		Short:         "Driftline hub and command-line client",
		Long:          "driftline runs a Driftline hub (driftline hub serve) and talks to one over its HTTP API.",
		SilenceErrors: true,
		SilenceUsage:  true,
		Args:          cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return cmd.Help()
		},
	}
	root.SetOut(a.stdout)
	root.SetErr(a.stderr)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usagef("%v", err) })
	pf := root.PersistentFlags()
	pf.StringVar(&a.hub, "hub", "", "hub URL (env DRIFTLINE_HUB, default "+DefaultHub+")")
	pf.StringVar(&a.token, "token", "", "API token (env DRIFTLINE_TOKEN, default: the admin.token of the local data dir)")
	pf.StringVarP(&a.output, "output", "o", "table", "output format: table or json (the API's JSON as is)")
	root.AddCommand(
		a.hubCmd(), a.datasetCmd(), a.modelCmd(), a.deviceCmd(), a.rolloutCmd(), a.lineageCmd(),
		a.driftCmd(), a.clusterCmd(), a.auditCmd(), a.tokenCmd(), a.keyCmd(), a.brokerCmd(), a.versionCmd(),
		a.webhookCmd(),
	)
	refuseUnknownSubcommands(root)
	return root
}

// refuseUnknownSubcommands makes every command group below root refuse an unknown subcommand
// with a usage error, as cobra does only at the root: a group without an action of its own
// prints its help when called alone and says "unknown command" for anything else; a group that
// runs something itself (audit) keeps its action but names an unknown subcommand the same way.
// See PITFALLS (cobra issues #706, #1156).
func refuseUnknownSubcommands(root *cobra.Command) {
	for _, c := range root.Commands() {
		refuseUnknownSubcommands(c)
		if !c.HasSubCommands() {
			continue
		}
		if !c.Runnable() {
			c.RunE = func(cmd *cobra.Command, _ []string) error { return cmd.Help() }
		}
		c.Args = unknownSubcommand(c.Args)
	}
}

// unknownSubcommand wraps a group's argument check: a first argument that is no subcommand is
// an unknown command (with cobra's suggestions); otherwise next decides (nil: no arguments).
func unknownSubcommand(next cobra.PositionalArgs) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) > 0 {
			msg := fmt.Sprintf("unknown command %q for %q", args[0], cmd.CommandPath())
			if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
				msg += "; did you mean " + strings.Join(s, " or ") + "?"
			}
			return usagef("%s", msg)
		}
		if next != nil {
			return next(cmd, args)
		}
		return nil
	}
}

// env returns the value of an environment variable, "" when unset.
func (a *app) env(name string) string {
	v, _ := a.getenv(name)
	return v
}

// client returns an API client for --hub/DRIFTLINE_HUB with --token/DRIFTLINE_TOKEN or the local
// admin token file.
func (a *app) client() (*client, error) {
	if a.output != "table" && a.output != "json" {
		return nil, usagef("--output %q: want table or json", a.output)
	}
	hub := a.hub
	if hub == "" {
		hub = a.env("DRIFTLINE_HUB")
	}
	if hub == "" {
		hub = DefaultHub
	}
	tok := a.token
	if tok == "" {
		tok = a.env("DRIFTLINE_TOKEN")
	}
	if tok == "" {
		dir := a.env("DRIFTLINE_DATA")
		if dir == "" {
			dir = DefaultDataDir
		}
		if b, err := os.ReadFile(filepath.Join(dir, "admin.token")); err == nil {
			tok = strings.TrimSpace(string(b))
		}
	}
	return newClient(hub, tok)
}

// jsonOut reports whether -o json was asked for.
func (a *app) jsonOut() bool { return a.output == "json" }
