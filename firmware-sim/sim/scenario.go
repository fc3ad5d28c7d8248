// Package sim is firmware-sim's model of a fleet of sensor devices: a Scenario (parsed from
// YAML) names the fields each device measures, their distributions, a rate, and timed events
// (mean shift, variance change, category swap, nulls, out-of-range values, wrong types,
// malformed JSON, disconnects). A Stream turns one device of a scenario into the exact bytes its
// firmware would publish, as a pure function of the scenario, the seed, the device and the start
// time. DESIGN.md has the invariants.
package sim

import (
	"time"
)

// Distribution kinds of a Field.
const (
	DistNormal      = "normal"
	DistUniform     = "uniform"
	DistCategorical = "categorical"
	DistSine        = "sine"
	DistRandomWalk  = "random_walk"
)

// Event kinds.
const (
	EventMeanShift      = "mean_shift"
	EventVarianceChange = "variance_change"
	EventCategorySwap   = "category_swap"
	EventNulls          = "nulls"
	EventOutOfRange     = "out_of_range"
	EventWrongType      = "wrong_type"
	EventMalformedJSON  = "malformed_json"
	EventDisconnect     = "disconnect"
)

// Scenario is one simulated fleet: what every device measures and what happens to it when.
// Parse returns a validated Scenario; a Scenario built by hand must pass Validate.
type Scenario struct {
	// Name is a label for logs and summaries.
	Name string `yaml:"name"`
	// Description says what the scenario shows.
	Description string `yaml:"description"`
	// DeviceID is the device id pattern: "{n}" is replaced by the device number (1-based) and
	// "{n:W}" by the number zero-padded to W digits. Default "sim-{n:03}".
	DeviceID string `yaml:"device_id"`
	// Rate is messages per second per device (default 1). A fraction means one message every
	// 1/Rate seconds.
	Rate float64 `yaml:"rate"`
	// Batch is rows per message (default 1): 1 sends a JSON object, more a JSON array.
	Batch int `yaml:"batch"`
	// Duration ends the scenario; 0 runs until stopped (or until a replay ends).
	Duration Duration `yaml:"duration"`
	// Fields are the measured fields, in payload order. At least one unless Replay is set.
	Fields []Field `yaml:"fields"`
	// Events are timed changes to the generated readings.
	Events []Event `yaml:"events"`
	// Replay, when set, replays a recorded series instead of generating Fields.
	Replay *Replay `yaml:"replay"`

	// Dir is the directory of the scenario file (relative replay paths start there).
	Dir string `yaml:"-"`
}

// Field is one measured value and its distribution. Which parameters apply depends on Dist.
type Field struct {
	// Name is the JSON key of the value.
	Name string `yaml:"name"`
	// Dist is the distribution: normal, uniform, categorical, sine or random_walk.
	Dist string `yaml:"dist"`
	// Mean and Stddev parameterise normal.
	Mean   float64 `yaml:"mean"`
	Stddev float64 `yaml:"stddev"`
	// Min and Max bound uniform, and clamp random_walk when both are set.
	Min *float64 `yaml:"min"`
	Max *float64 `yaml:"max"`
	// Values and Weights parameterise categorical (weights default to equal).
	Values  []string  `yaml:"values"`
	Weights []float64 `yaml:"weights"`
	// Offset, Amplitude, Period and Noise parameterise sine: offset + amplitude*sin(2πt/period)
	// + normal(0, noise).
	Offset    float64  `yaml:"offset"`
	Amplitude float64  `yaml:"amplitude"`
	Period    Duration `yaml:"period"`
	Noise     float64  `yaml:"noise"`
	// Start and Step parameterise random_walk: each row adds normal(0, step).
	Start float64 `yaml:"start"`
	Step  float64 `yaml:"step"`
	// Decimals rounds numeric values (default 3).
	Decimals *int `yaml:"decimals"`

	// Line is the field's line in the scenario file (0 when built by hand).
	Line int `yaml:"-"`
}

// Event is a timed change. It applies from At for Duration (0: to the end) to the devices it
// selects: the listed Devices, else a Share of the fleet (chosen by the seed), else every device.
type Event struct {
	// Kind is the event kind (mean_shift, variance_change, ...).
	Kind string `yaml:"kind"`
	// At is when the event starts, from the scenario's start.
	At Duration `yaml:"at"`
	// Duration is how long it lasts (0: to the end; required for disconnect).
	Duration Duration `yaml:"duration"`
	// Share selects this share (0 < share ≤ 1) of the devices, rounded up.
	Share *float64 `yaml:"share"`
	// Devices selects devices by id.
	Devices []string `yaml:"devices"`
	// Field is the field the event changes (all kinds but malformed_json and disconnect).
	Field string `yaml:"field"`
	// Delta is mean_shift's offset added to every value.
	Delta float64 `yaml:"delta"`
	// Factor is variance_change's multiplier of the deviation from the field's centre.
	Factor float64 `yaml:"factor"`
	// Swap maps categories to others for category_swap.
	Swap map[string]string `yaml:"swap"`
	// Probability is the share of rows (or messages, for malformed_json) affected by nulls,
	// out_of_range, wrong_type and malformed_json (default 1).
	Probability *float64 `yaml:"probability"`
	// Value is out_of_range's value.
	Value *float64 `yaml:"value"`

	// Line is the event's line in the scenario file (0 when built by hand).
	Line int `yaml:"-"`
}

// Replay names a recorded series to replay instead of generated fields.
type Replay struct {
	// File is the CSV file, relative to the scenario file's directory.
	File string `yaml:"file"`
	// TimeColumn is the timestamp column (RFC 3339, "2006-01-02 15:04:05" or Unix seconds/ms).
	TimeColumn string `yaml:"time_column"`
	// Fields are the value columns sent, under their column names.
	Fields []string `yaml:"fields"`
	// Speed is how many times faster than real time the series is played (default 1).
	Speed float64 `yaml:"speed"`
	// MaxGap caps the wait for one gap in the series, in series time (default 1h).
	MaxGap Duration `yaml:"max_gap"`
	// Loop restarts the series at its end (until the scenario's duration).
	Loop bool `yaml:"loop"`
}

// Duration is a time.Duration that YAML reads as "90s", "5m" or a number of seconds.
type Duration time.Duration

// D returns the duration as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// Interval is the time between two messages of one device.
func (s *Scenario) Interval() time.Duration {
	return time.Duration(float64(time.Second) / s.Rate)
}
