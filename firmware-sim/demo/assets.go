package demo

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/driftline/driftline/firmware-sim/sim"
)

// fieldsYAML are the demo's sensor fields, shared by the training sample and the live scenario
// so the live data matches the reference until the mean shift.
const fieldsYAML = `fields:
  - {name: temperature, dist: normal, mean: 70, stddev: 2}
  - {name: humidity, dist: uniform, min: 35, max: 55}
  - {name: vibration, dist: normal, mean: 0.5, stddev: 0.05}
  - {name: mode, dist: categorical, values: [idle, run, clean], weights: [0.2, 0.75, 0.05]}
`

// contractJSON is the demo dataset's data contract. It allows collection (x-driftline.collect):
// drifted windows' sampled rows go to the hub and become a candidate dataset version. device_id and ts are in every reading but
// are no model input: they are marked as labels so they are profiled and never scored (a
// timestamp would drift in every window). Numeric features use the normalised Wasserstein
// distance with a threshold of 0.5 reference standard deviations: a window of 50 steady rows
// scores about 0.2, a shifted one several units, so a steady device does not flag drift by
// chance (KS at p < 0.05, the default for small references, flags one window in twenty per
// feature).
const contractJSON = `{
  "fields": [
    {"name": "device_id", "type": "string", "x-driftline": {"role": "label"}},
    {"name": "ts", "type": "integer", "x-driftline": {"role": "label"}},
    {"name": "temperature", "type": "number", "constraints": {"required": true, "minimum": -40, "maximum": 150}, "x-driftline": {"drift": {"method": "wasserstein", "threshold": 0.5}}},
    {"name": "humidity", "type": "number", "constraints": {"minimum": 0, "maximum": 100}, "x-driftline": {"drift": {"method": "wasserstein", "threshold": 0.5}}},
    {"name": "vibration", "type": "number", "constraints": {"minimum": 0}, "x-driftline": {"drift": {"method": "wasserstein", "threshold": 0.5}}},
    {"name": "mode", "type": "string", "constraints": {"enum": ["idle", "run", "clean"]}}
  ],
  "x-driftline": {"collect": true}
}
`

// scenarioYAML returns the live scenario: the training fields, with a mean shift (and a wider
// vibration) on the shifted devices from shiftAfter.
func scenarioYAML(rate float64, shiftAfter time.Duration, shifted []string) string {
	devs, _ := json.Marshal(shifted)
	return fmt.Sprintf(`# written by the Driftline demo
name: demo-mean-shift
description: the training distribution, then a mean shift on %s after %s
rate: %v
%sevents:
  - {kind: mean_shift, at: %s, devices: %s, field: temperature, delta: 9}
  - {kind: mean_shift, at: %s, devices: %s, field: humidity, delta: 25}
  - {kind: variance_change, at: %s, devices: %s, field: vibration, factor: 4}
`, devs, shiftAfter, rate, fieldsYAML, shiftAfter, devs, shiftAfter, devs, shiftAfter, devs)
}

// writeSample writes a CSV training sample of rows readings drawn from the demo's fields.
func writeSample(path string, rows int) error {
	s, err := sim.Parse([]byte("device_id: \"train-{n}\"\n"+fieldsYAML), ".")
	if err != nil {
		return err
	}
	f, err := sim.NewFleet(s, sim.Options{Seed: 1000, Devices: 1, Start: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)})
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	w := csv.NewWriter(&buf)
	_ = w.Write([]string{"device_id", "ts", "temperature", "humidity", "vibration", "mode"})
	st := f.Stream(0)
	for i := 0; i < rows; i++ {
		m, ok := st.Next()
		if !ok {
			break
		}
		r := m.Rows[0]
		rec := []string{st.ID(), strconv.FormatInt(m.TS.UnixMilli(), 10)}
		for _, v := range r {
			switch x := v.(type) {
			case float64:
				rec = append(rec, strconv.FormatFloat(x, 'f', -1, 64))
			case string:
				rec = append(rec, x)
			default:
				rec = append(rec, "")
			}
		}
		_ = w.Write(rec)
	}
	w.Flush()
	if err := w.Error(); err != nil {
		return err
	}
	return os.WriteFile(path, buf.Bytes(), 0o644)
}

// writeArtifacts writes two model files of size bytes: v2 shares all of v1 but a run of
// changed bytes in the middle (about 5%), so the pull of v2 moves only the chunks that differ.
func writeArtifacts(dir string, size int) (v1, v2 string, err error) {
	r := rand.New(rand.NewPCG(42, 42))
	b := make([]byte, size)
	for i := range b {
		b[i] = byte(r.UintN(256))
	}
	v1, v2 = filepath.Join(dir, "model-v1.bin"), filepath.Join(dir, "model-v2.bin")
	if err := os.WriteFile(v1, b, 0o644); err != nil {
		return "", "", err
	}
	for i := size / 2; i < size/2+size/20; i++ {
		b[i] = byte(r.UintN(256))
	}
	if err := os.WriteFile(v2, b, 0o644); err != nil {
		return "", "", err
	}
	return v1, v2, nil
}
