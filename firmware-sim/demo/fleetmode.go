package demo

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/driftline/driftline/firmware-sim/creds"
	"github.com/driftline/driftline/firmware-sim/fleet"
)

// startFleet runs the demo's agents as one `firmware-sim fleet` process. The devices were
// enrolled through the CLI, so their tokens are handed to the fleet's state dir (fleet mode
// keeps identities there), and the scenario's shift is pushed back by lead.
func (d *run) startFleet(dirs map[string]string, url, token, mqttURL, scen string, lead time.Duration, ids []string) error {
	cs, err := creds.Load(dirs["agents"])
	if err != nil {
		return err
	}
	state := filepath.Join(filepath.Dir(dirs["agents"]), "fleet")
	if err := os.MkdirAll(state, 0o700); err != nil {
		return err
	}
	if err := creds.Save(filepath.Join(state, fleet.CredentialsFile), cs); err != nil {
		return err
	}
	if err := os.WriteFile(scen, []byte(scenarioYAML(d.cfg.Rate, lead+d.cfg.ShiftAfter, d.shifted)), 0o644); err != nil {
		return err
	}
	_, err = d.procs.start("fleet", d.bin("firmware-sim"), "fleet", "--devices", fmt.Sprint(len(ids)), "--hub", url, "--token", token,
		"--broker", mqttURL, "--state-dir", state, "--id-pattern", "edge-{n}", "--scenario", scen, "--seed", "7",
		"--window", d.cfg.Window.String(), "--heartbeat", "2s", "--log-level", "info")
	return err
}
