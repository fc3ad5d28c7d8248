package cli_test

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"github.com/driftline/driftline/agent"
	"github.com/driftline/driftline/agent/cli"
)

func TestMainExitCodes(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	os.WriteFile(good, []byte("device_id: d1\ntoken: t\nbrokers: [tcp://127.0.0.1:1]\ntrusted_keys: [3q2+7wAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=]\n"), 0o600)
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("device_id: d1\nbrokers: [http://x]\n"), 0o600)
	cases := []struct {
		name   string
		args   []string
		code   int
		outHas string
		errHas string
	}{
		{"version", []string{"version"}, cli.ExitOK, agent.Version, ""},
		{"run without config", []string{"run"}, cli.ExitUsage, "", "--config is required"},
		{"unknown flag", []string{"run", "--nope"}, cli.ExitUsage, "", "unknown flag"},
		{"unknown command", []string{"fly"}, cli.ExitUsage, "", "unknown command"},
		{"bad config names key and line", []string{"run", "--config", bad}, cli.ExitUsage, "", "line 2: brokers[0]"},
		{"missing config", []string{"run", "--config", filepath.Join(dir, "none.yaml")}, cli.ExitFailure, "", "no such file"},
		{"bad metrics override", []string{"run", "--config", good, "--metrics", "nowhere"}, cli.ExitUsage, "", "metrics"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			code := cli.Main(tc.args, &out, &errb)
			if code != tc.code || !strings.Contains(out.String(), tc.outHas) || !strings.Contains(errb.String(), tc.errHas) {
				t.Fatalf("exit %d (want %d)\nstdout: %s\nstderr: %s", code, tc.code, out.String(), errb.String())
			}
		})
	}
}

func TestLoadConfigOverrides(t *testing.T) {
	path := filepath.Join(t.TempDir(), "a.yaml")
	os.WriteFile(path, []byte("device_id: d1\ntoken: t\nbrokers: [tcp://127.0.0.1:1]\ntrusted_keys: [3q2+7wAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=]\nstate_dir: /file/state\nmodel_dir: /file/models\n"), 0o600)
	c, err := cli.LoadConfig(path, "/flag/state", "", "127.0.0.1:9999")
	if err != nil {
		t.Fatal(err)
	}
	if c.StateDir != "/flag/state" || c.ModelDir != "/file/models" || c.Metrics != "127.0.0.1:9999" {
		t.Fatalf("%+v", c)
	}
}

// TestRegister shows how the pipeline's files add subcommands.
func TestRegister(t *testing.T) {
	cli.Register(func() *cobra.Command {
		return &cobra.Command{Use: "probe-sub", RunE: func(cmd *cobra.Command, _ []string) error {
			cmd.Print("probed")
			return cli.ExitError{Code: 7}
		}}
	})
	var out, errb bytes.Buffer
	if code := cli.Main([]string{"probe-sub"}, &out, &errb); code != 7 || out.String() != "probed" {
		t.Fatalf("exit %d, out %q, err %q", code, out.String(), errb.String())
	}
}
