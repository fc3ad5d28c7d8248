package cli

import (
	"io"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

// TestUnknownSubcommand runs an unknown subcommand under every command that has subcommands
// (the root and each group, found by walking the command tree, so a new group is covered
// without editing this test): each exits with the usage code and says "unknown command", as
// cobra does at the root. A group with no action of its own, alone, prints its help and exits 0.
func TestUnknownSubcommand(t *testing.T) {
	root := (&app{stdout: io.Discard, stderr: io.Discard}).root()
	var groups [][]string
	pure := map[string]bool{} // groups with no action of their own (no local flags): help only
	var walk func(c *cobra.Command, path []string)
	walk = func(c *cobra.Command, path []string) {
		if c.HasSubCommands() {
			groups = append(groups, path)
			pure[strings.Join(path, " ")] = !c.LocalNonPersistentFlags().HasAvailableFlags()
		}
		for _, sub := range c.Commands() {
			if sub.Name() == "help" || sub.Name() == "completion" {
				continue
			}
			walk(sub, append(append([]string{}, path...), sub.Name()))
		}
	}
	walk(root, nil)
	if len(groups) < 10 {
		t.Fatalf("found %d command groups, expected the root and at least 9 groups: %v", len(groups), groups)
	}
	env := map[string]string{"DRIFTLINE_HUB": "http://127.0.0.1:1", "DRIFTLINE_TOKEN": "x"}
	for _, g := range groups {
		for _, extra := range [][]string{{"no-such-command"}, {"no-such-command", "FILE"}} {
			args := append(append([]string{}, g...), extra...)
			t.Run(strings.Join(args, " "), func(t *testing.T) {
				r := runCLI(t, env, args...)
				if r.code != ExitUsage {
					t.Errorf("exit %d, want %d (usage)", r.code, ExitUsage)
				}
				if !strings.Contains(r.stderr, "unknown command") || !strings.Contains(r.stderr, `"`+extra[0]+`"`) {
					t.Errorf("stderr %q does not say unknown command %q", r.stderr, extra[0])
				}
			})
		}
		if len(g) == 0 || !pure[strings.Join(g, " ")] {
			continue
		}
		t.Run(strings.Join(g, " ")+" alone", func(t *testing.T) {
			r := runCLI(t, env, g...)
			if r.code != ExitOK || !strings.Contains(r.stdout, "Available Commands") {
				t.Errorf("exit %d, stdout %q: want the group's help and exit 0", r.code, r.stdout)
			}
		})
	}
}
