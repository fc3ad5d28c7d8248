package cli

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/driftline/driftline/firmware-sim/creds"
	"github.com/driftline/driftline/firmware-sim/publish"
	"github.com/driftline/driftline/firmware-sim/sim"
	"github.com/driftline/driftline/shared/wire"
)

// runFlags are the flags of `firmware-sim run`.
type runFlags struct {
	scenario    string
	replay      string
	timeColumn  string
	fields      []string
	speed       string
	maxGap      time.Duration
	loop        bool
	brokers     []string
	devices     int
	credentials []string
	seed        uint64
	duration    time.Duration
	start       string
	dryRun      bool
	prefix      string
	every       time.Duration
	logLevel    string
}

func runCmd() *cobra.Command {
	var f runFlags
	cmd := &cobra.Command{
		Use:   "run --scenario FILE.yaml | --replay FILE.csv --field NAME [flags]",
		Short: "Publish simulated readings on each device's data topic",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runRun(cmd.Context(), f, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.scenario, "scenario", "", "scenario file (YAML; see firmware-sim/scenarios)")
	fl.StringVar(&f.replay, "replay", "", "replay this CSV series (instead of, or overriding, the scenario's replay)")
	fl.StringVar(&f.timeColumn, "time-column", "timestamp", "timestamp column of --replay")
	fl.StringSliceVar(&f.fields, "field", nil, "value column(s) of --replay, NAME[,NAME]")
	fl.StringVar(&f.speed, "speed", "", "replay speed, e.g. 600x (default 1x, or the scenario's)")
	fl.DurationVar(&f.maxGap, "max-gap", 0, "longest wait for one gap of the series, in series time (default 1h)")
	fl.BoolVar(&f.loop, "loop", false, "restart the replay at the end of the series")
	fl.StringSliceVar(&f.brokers, "broker", []string{"tcp://127.0.0.1:1883"}, "broker URL(s), tcp:// or ssl://")
	fl.IntVar(&f.devices, "devices", 0, "number of devices (default: one per credential, else 1)")
	fl.StringArrayVar(&f.credentials, "credentials", nil, "device ids and tokens: an agent config, a list, or a directory of them (repeatable)")
	fl.Uint64Var(&f.seed, "seed", 1, "random seed: the same seed gives the same bytes")
	fl.DurationVar(&f.duration, "duration", 0, "stop after this long (overrides the scenario; 0: the scenario's, or until Ctrl-C)")
	fl.StringVar(&f.start, "start", "", "timestamp of the first reading, RFC 3339 (default: now)")
	fl.BoolVar(&f.dryRun, "dry-run", false, "print TOPIC PAYLOAD lines at once instead of publishing (needs a duration or a replay)")
	fl.StringVar(&f.prefix, "topic-prefix", wire.DefaultPrefix, "MQTT topic prefix")
	fl.DurationVar(&f.every, "summary-every", 5*time.Second, "interval of the live summary on stderr")
	fl.StringVar(&f.logLevel, "log-level", "warn", "debug, info, warn or error")
	return cmd
}

// loadScenario builds the scenario of run and fleet from --scenario and the replay flags.
func loadScenario(path, replay, timeColumn string, fields []string, speed string, maxGap time.Duration, loop bool, duration time.Duration) (*sim.Scenario, error) {
	var s *sim.Scenario
	switch {
	case path != "":
		var err error
		if s, err = sim.ParseFile(path); err != nil {
			return nil, err
		}
	case replay != "":
		s = &sim.Scenario{Name: "replay " + filepath.Base(replay), Replay: &sim.Replay{}}
	default:
		return nil, fmt.Errorf("%w: --scenario or --replay is required", ErrUsage)
	}
	if replay != "" {
		if len(fields) == 0 {
			return nil, fmt.Errorf("%w: --replay needs --field", ErrUsage)
		}
		abs, err := filepath.Abs(replay)
		if err != nil {
			return nil, err
		}
		if s.Replay == nil {
			s.Replay = &sim.Replay{}
		}
		s.Replay.File, s.Replay.TimeColumn, s.Replay.Fields = abs, timeColumn, fields
		s.Fields = nil
	}
	if s.Replay != nil {
		if speed != "" {
			v, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(speed), "x"), 64)
			if err != nil || v <= 0 {
				return nil, fmt.Errorf("%w: --speed %q: want e.g. 600x", ErrUsage, speed)
			}
			s.Replay.Speed = v
		}
		if maxGap > 0 {
			s.Replay.MaxGap = sim.Duration(maxGap)
		}
		if loop {
			s.Replay.Loop = true
		}
	}
	if duration > 0 {
		s.Duration = sim.Duration(duration)
	}
	if err := s.Validate(); err != nil {
		return nil, err
	}
	return s, nil
}

func newLogger(w io.Writer, level string) (*slog.Logger, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("%w: --log-level: %v", ErrUsage, err)
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: lvl})), nil
}

func runRun(ctx context.Context, f runFlags, stdout, stderr io.Writer) error {
	log, err := newLogger(stderr, f.logLevel)
	if err != nil {
		return err
	}
	s, err := loadScenario(f.scenario, f.replay, f.timeColumn, f.fields, f.speed, f.maxGap, f.loop, f.duration)
	if err != nil {
		return err
	}
	topics, err := wire.NewTopics(f.prefix)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrUsage, err)
	}
	var ids []string
	var tokens map[string]string
	if len(f.credentials) > 0 {
		cs, err := creds.Load(f.credentials...)
		if err != nil {
			return err
		}
		if len(cs) == 0 {
			return fmt.Errorf("%w: --credentials hold no device", ErrUsage)
		}
		tokens = map[string]string{}
		for _, c := range cs {
			ids = append(ids, c.ID)
			tokens[c.ID] = c.Token
		}
		if f.devices == 0 {
			f.devices = len(cs)
		}
		if f.devices > len(cs) {
			return fmt.Errorf("%w: --devices %d but only %d credentials", ErrUsage, f.devices, len(cs))
		}
	}
	if f.devices == 0 {
		f.devices = 1
	}
	start := time.Now().Truncate(time.Millisecond)
	if f.start != "" {
		if start, err = time.Parse(time.RFC3339Nano, f.start); err != nil {
			return fmt.Errorf("%w: --start: %v", ErrUsage, err)
		}
	}
	fleet, err := sim.NewFleet(s, sim.Options{Seed: f.seed, Devices: f.devices, IDs: ids, Start: start})
	if err != nil {
		return err
	}
	if f.dryRun {
		if s.Duration == 0 && (s.Replay == nil || s.Replay.Loop) {
			return fmt.Errorf("%w: --dry-run needs a duration", ErrUsage)
		}
		return dryRun(fleet, topics, stdout)
	}
	log.Info("firmware-sim run", "scenario", s.Name, "devices", f.devices, "seed", f.seed, "brokers", f.brokers)
	var stats publish.Stats
	sumCtx, stopSum := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		summaries(sumCtx, stderr, f.every, f.devices, &stats)
	}()
	err = publish.RunMQTT(ctx, fleet, time.Now(), publish.MQTTOptions{
		Brokers: f.brokers, Tokens: tokens, Topics: topics, Logger: log,
	}, &stats)
	stopSum()
	<-done
	fmt.Fprintln(stderr, "final:", summaryLine(&stats, f.devices, 0, 0))
	return err
}

// dryRun writes every message of every device as "TOPIC PAYLOAD" lines, device by device.
func dryRun(f *sim.Fleet, topics wire.Topics, w io.Writer) error {
	for i, id := range f.IDs() {
		st := f.Stream(i)
		topic := topics.Data(id)
		for m, ok := st.Next(); ok; m, ok = st.Next() {
			if _, err := fmt.Fprintf(w, "%s %s\n", topic, m.Payload); err != nil {
				return err
			}
		}
	}
	return nil
}

// summaries prints a live summary line every interval until ctx ends.
func summaries(ctx context.Context, w io.Writer, every time.Duration, devices int, stats *publish.Stats) {
	if every <= 0 {
		return
	}
	t := time.NewTicker(every)
	defer t.Stop()
	var last int64
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			n := stats.Messages.Load()
			fmt.Fprintln(w, summaryLine(stats, devices, n-last, every))
			last = n
		}
	}
}

func summaryLine(s *publish.Stats, devices int, recent int64, every time.Duration) string {
	line := fmt.Sprintf("devices online %d/%d, messages %d, rows %d, bytes %d, failed %d, malformed %d, disconnects %d",
		s.Online.Load(), devices, s.Messages.Load(), s.Rows.Load(), s.Bytes.Load(), s.Failed.Load(), s.Malformed.Load(), s.Disconnects.Load())
	if every > 0 {
		line += fmt.Sprintf(", %.1f msg/s", float64(recent)/every.Seconds())
	}
	return line
}
