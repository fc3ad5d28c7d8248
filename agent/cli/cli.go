// Package cli is the driftline-agent command line: `run`, `version`, and the subcommands other
// files of this package add through Register (the data pipeline's check, profile and
// quarantine).
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/driftline/driftline/agent"
	"github.com/driftline/driftline/agent/config"
	"github.com/driftline/driftline/agent/devicedb"
)

// Exit codes of driftline-agent.
const (
	// ExitOK: success (or a clean stop on SIGINT/SIGTERM).
	ExitOK = 0
	// ExitFailure: the command ran and found a problem (the pipeline's check uses it for
	// invalid rows or drift).
	ExitFailure = 1
	// ExitUsage: bad flags, a bad config file or bad input.
	ExitUsage = 2
)

// ErrUsage marks errors that exit with ExitUsage.
var ErrUsage = errors.New("usage")

var (
	regMu      sync.Mutex
	registered []func() *cobra.Command
	runHooks   []func(a *agent.Agent) error
)

// RegisterRunHook adds h to `run`: it is called with the agent after agent.New and before Run,
// in registration order, to add extensions (agent.AddExtension: the data pipeline, the
// sampler, the outputs tracker). An error stops the start.
// Files of this package call it from init().
func RegisterRunHook(h func(a *agent.Agent) error) {
	regMu.Lock()
	defer regMu.Unlock()
	runHooks = append(runHooks, h)
}

// Register adds a subcommand to the root command. Files of this package call it from init();
// f is called once per NewRoot.
func Register(f func() *cobra.Command) {
	regMu.Lock()
	defer regMu.Unlock()
	registered = append(registered, f)
}

// NewRoot builds the driftline-agent command tree.
func NewRoot() *cobra.Command {
	root := &cobra.Command{
		Use:           "driftline-agent",
		Short:         "Driftline edge agent: validates data, reports drift, pulls and activates models over MQTT",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(runCmd(), versionCmd())
	regMu.Lock()
	for _, f := range registered {
		root.AddCommand(f())
	}
	regMu.Unlock()
	return root
}

// Main runs the command line with args and returns the exit code.
func Main(args []string, stdout, stderr io.Writer) int {
	root := NewRoot()
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.Execute()
	if err == nil {
		return ExitOK
	}
	fmt.Fprintln(stderr, "driftline-agent:", err)
	var ee ExitError
	switch {
	case errors.As(err, &ee):
		return ee.Code
	case errors.Is(err, ErrUsage), errors.Is(err, config.ErrSyntax), errors.Is(err, config.ErrInvalid), isFlagError(err):
		return ExitUsage
	}
	return ExitFailure
}

// ExitError carries an exit code chosen by a subcommand.
type ExitError struct {
	Code int
	Err  error
}

func (e ExitError) Error() string {
	if e.Err == nil {
		return fmt.Sprintf("exit %d", e.Code)
	}
	return e.Err.Error()
}

func (e ExitError) Unwrap() error { return e.Err }

func isFlagError(err error) bool {
	// cobra reports unknown flags and commands as plain errors; they come before any work.
	msg := err.Error()
	for _, p := range []string{"unknown flag", "unknown command", "unknown shorthand", "flag needs an argument", "invalid argument", "accepts "} {
		if strings.Contains(msg, p) {
			return true
		}
	}
	return false
}

func versionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the agent's version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			fmt.Fprintln(cmd.OutOrStdout(), agent.Version)
			return nil
		},
	}
}

func runCmd() *cobra.Command {
	var cfgPath, stateDir, modelDir, metrics string
	cmd := &cobra.Command{
		Use:   "run --config FILE",
		Short: "Run the agent until SIGINT or SIGTERM",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if cfgPath == "" {
				return fmt.Errorf("%w: --config is required", ErrUsage)
			}
			cfg, err := LoadConfig(cfgPath, stateDir, modelDir, metrics)
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return Run(ctx, cfg, cmd.ErrOrStderr(), agent.Options{})
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfgPath, "config", "", "agent config file (YAML; see docs/agent-config.md)")
	f.StringVar(&stateDir, "state-dir", "", "state directory (overrides state_dir)")
	f.StringVar(&modelDir, "model-dir", "", "model directory (overrides model_dir)")
	f.StringVar(&metrics, "metrics", "", `metrics and ingest listen address, or "off" (overrides metrics)`)
	return cmd
}

// LoadConfig loads the config file and applies the flag overrides (empty: keep the file's).
func LoadConfig(path, stateDir, modelDir, metrics string) (config.Config, error) {
	cfg, err := config.Load(path)
	if err != nil {
		return config.Config{}, err
	}
	if stateDir != "" {
		cfg.StateDir = stateDir
	}
	if modelDir != "" {
		cfg.ModelDir = modelDir
	}
	if metrics != "" {
		cfg.Metrics = metrics
	}
	if err := cfg.Validate(); err != nil {
		return config.Config{}, err
	}
	return cfg, nil
}

// Run opens the state database in cfg.StateDir and runs one agent until ctx ends. Logs go to
// logOut as text at cfg.LogLevel; opts.Logger, when set, is used instead.
func Run(ctx context.Context, cfg config.Config, logOut io.Writer, opts agent.Options) error {
	if opts.Logger == nil {
		var lvl slog.Level
		if err := lvl.UnmarshalText([]byte(cfg.LogLevel)); err != nil {
			return fmt.Errorf("%w: log_level: %v", ErrUsage, err)
		}
		opts.Logger = slog.New(slog.NewTextHandler(logOut, &slog.HandlerOptions{Level: lvl}))
	}
	if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
		return fmt.Errorf("state directory: %w", err)
	}
	db, err := devicedb.Open(cfg.StateDir)
	if err != nil {
		return err
	}
	defer db.Close()
	gcCtx, gcStop := context.WithCancel(ctx)
	defer gcStop()
	go db.RunGC(gcCtx, 5*time.Minute, opts.Logger)
	a, err := agent.New(cfg, db.Root(), opts)
	if err != nil {
		return err
	}
	regMu.Lock()
	hooks := append([]func(*agent.Agent) error(nil), runHooks...)
	regMu.Unlock()
	for _, h := range hooks {
		if err := h(a); err != nil {
			return fmt.Errorf("start extension: %w", err)
		}
	}
	opts.Logger.Info("driftline-agent starting", "version", agent.Version, "device", cfg.DeviceID, "brokers", cfg.Brokers)
	return a.Run(ctx)
}
