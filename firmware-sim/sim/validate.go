package sim

import (
	"fmt"
	"math"
	"regexp"
	"strconv"

	"github.com/driftline/driftline/shared/wire"
)

// DefaultDeviceID is the device id pattern when a scenario names none.
const DefaultDeviceID = "sim-{n:03}"

// MaxRate bounds messages per second per device.
const MaxRate = 10000

// MaxBatch bounds rows per message.
const MaxBatch = 10000

var idPlaceholder = regexp.MustCompile(`\{n(?::(\d{1,2}))?\}`)

// Validate applies defaults and checks that the scenario can run.
func (s *Scenario) Validate() error { return s.validate(nil) }

func (s *Scenario) validate(lines map[string]int) error {
	bad := func(key, format string, args ...any) error {
		return fmt.Errorf("%w: line %d: %s", ErrInvalid, lines[key], fmt.Sprintf(format, args...))
	}
	if s.DeviceID == "" {
		s.DeviceID = DefaultDeviceID
	}
	if !idPlaceholder.MatchString(s.DeviceID) {
		return bad("device_id", "device_id %q needs a {n} or {n:W} placeholder", s.DeviceID)
	}
	if err := wire.ValidateName("device id", DeviceID(s.DeviceID, 1)); err != nil {
		return bad("device_id", "device_id %q: %v", s.DeviceID, err)
	}
	if s.Rate == 0 {
		s.Rate = 1
	}
	if !(s.Rate > 0 && s.Rate <= MaxRate) {
		return bad("rate", "rate %v must be in (0, %d]", s.Rate, MaxRate)
	}
	if s.Batch == 0 {
		s.Batch = 1
	}
	if s.Batch < 0 || s.Batch > MaxBatch {
		return bad("batch", "batch %d must be in [1, %d]", s.Batch, MaxBatch)
	}
	if s.Replay != nil {
		if err := s.Replay.validate(); err != nil {
			return bad("replay", "replay: %v", err)
		}
	} else if len(s.Fields) == 0 {
		return bad("fields", "at least one field is needed (or a replay)")
	}
	names := map[string]*Field{}
	for i := range s.Fields {
		f := &s.Fields[i]
		if err := f.validate(); err != nil {
			return fmt.Errorf("%w: line %d: field %q: %v", ErrInvalid, f.Line, f.Name, err)
		}
		if names[f.Name] != nil || f.Name == "device_id" || f.Name == "ts" {
			return fmt.Errorf("%w: line %d: field name %q is used twice or reserved", ErrInvalid, f.Line, f.Name)
		}
		names[f.Name] = f
	}
	if s.Replay != nil {
		for _, n := range s.Replay.Fields {
			names[n] = &Field{Name: n, Dist: DistNormal}
		}
	}
	for i := range s.Events {
		e := &s.Events[i]
		if err := e.validate(names); err != nil {
			return fmt.Errorf("%w: line %d: event %d (%s): %v", ErrInvalid, e.Line, i+1, e.Kind, err)
		}
	}
	return nil
}

func (f *Field) validate() error {
	if err := wire.ValidateName("name", f.Name); err != nil {
		return err
	}
	finite := func(vs ...float64) bool {
		for _, v := range vs {
			if math.IsNaN(v) || math.IsInf(v, 0) {
				return false
			}
		}
		return true
	}
	if !finite(f.Mean, f.Stddev, f.Offset, f.Amplitude, f.Noise, f.Start, f.Step) {
		return fmt.Errorf("parameters must be finite numbers")
	}
	if f.Decimals != nil && (*f.Decimals < 0 || *f.Decimals > 12) {
		return fmt.Errorf("decimals %d must be in [0, 12]", *f.Decimals)
	}
	switch f.Dist {
	case DistNormal:
		if f.Stddev < 0 {
			return fmt.Errorf("stddev must be ≥ 0")
		}
	case DistUniform:
		if f.Min == nil || f.Max == nil || !finite(*f.Min, *f.Max) || *f.Min > *f.Max {
			return fmt.Errorf("uniform needs finite min ≤ max")
		}
	case DistCategorical:
		if len(f.Values) == 0 {
			return fmt.Errorf("categorical needs values")
		}
		if len(f.Weights) != 0 && len(f.Weights) != len(f.Values) {
			return fmt.Errorf("%d weights for %d values", len(f.Weights), len(f.Values))
		}
		sum := 0.0
		for _, w := range f.Weights {
			if !(w >= 0) || math.IsInf(w, 0) {
				return fmt.Errorf("weights must be ≥ 0")
			}
			sum += w
		}
		if len(f.Weights) != 0 && sum == 0 {
			return fmt.Errorf("weights sum to 0")
		}
	case DistSine:
		if f.Period <= 0 {
			return fmt.Errorf("sine needs a period > 0")
		}
		if f.Noise < 0 {
			return fmt.Errorf("noise must be ≥ 0")
		}
	case DistRandomWalk:
		if f.Step < 0 {
			return fmt.Errorf("step must be ≥ 0")
		}
		if (f.Min == nil) != (f.Max == nil) || (f.Min != nil && (!finite(*f.Min, *f.Max) || *f.Min > *f.Max)) {
			return fmt.Errorf("random_walk bounds need both min ≤ max, finite")
		}
	case "":
		return fmt.Errorf("dist is required (normal, uniform, categorical, sine, random_walk)")
	default:
		return fmt.Errorf("unknown dist %q (normal, uniform, categorical, sine, random_walk)", f.Dist)
	}
	return nil
}

func (e *Event) validate(fields map[string]*Field) error {
	if e.Share != nil && !(*e.Share > 0 && *e.Share <= 1) {
		return fmt.Errorf("share %v must be in (0, 1]", *e.Share)
	}
	if e.Share != nil && len(e.Devices) > 0 {
		return fmt.Errorf("give share or devices, not both")
	}
	if e.Probability != nil && !(*e.Probability >= 0 && *e.Probability <= 1) {
		return fmt.Errorf("probability %v must be in [0, 1]", *e.Probability)
	}
	needField := func() (*Field, error) {
		if e.Field == "" {
			return nil, fmt.Errorf("field is required")
		}
		f := fields[e.Field]
		if f == nil {
			return nil, fmt.Errorf("unknown field %q", e.Field)
		}
		return f, nil
	}
	switch e.Kind {
	case EventMeanShift:
		f, err := needField()
		if err != nil {
			return err
		}
		if f.Dist == DistCategorical || math.IsNaN(e.Delta) || math.IsInf(e.Delta, 0) {
			return fmt.Errorf("mean_shift needs a numeric field and a finite delta")
		}
	case EventVarianceChange:
		f, err := needField()
		if err != nil {
			return err
		}
		if f.Dist == DistCategorical || !(e.Factor >= 0) || math.IsInf(e.Factor, 0) {
			return fmt.Errorf("variance_change needs a numeric field and a factor ≥ 0")
		}
	case EventCategorySwap:
		f, err := needField()
		if err != nil {
			return err
		}
		if f.Dist != DistCategorical || len(e.Swap) == 0 {
			return fmt.Errorf("category_swap needs a categorical field and a swap map")
		}
	case EventNulls, EventWrongType:
		if _, err := needField(); err != nil {
			return err
		}
	case EventOutOfRange:
		if _, err := needField(); err != nil {
			return err
		}
		if e.Value == nil || math.IsNaN(*e.Value) || math.IsInf(*e.Value, 0) {
			return fmt.Errorf("out_of_range needs a finite value")
		}
	case EventMalformedJSON:
	case EventDisconnect:
		if e.Duration <= 0 {
			return fmt.Errorf("disconnect needs a duration > 0")
		}
	case "":
		return fmt.Errorf("kind is required")
	default:
		return fmt.Errorf("unknown kind %q", e.Kind)
	}
	return nil
}

func (r *Replay) validate() error {
	if r.File == "" || r.TimeColumn == "" || len(r.Fields) == 0 {
		return fmt.Errorf("file, time_column and fields are required")
	}
	for _, f := range r.Fields {
		if err := wire.ValidateName("field", f); err != nil {
			return err
		}
	}
	if r.Speed == 0 {
		r.Speed = 1
	}
	if !(r.Speed > 0) || math.IsInf(r.Speed, 0) {
		return fmt.Errorf("speed %v must be > 0", r.Speed)
	}
	if r.MaxGap == 0 {
		r.MaxGap = Duration(3600e9)
	}
	return nil
}

// DeviceID expands an id pattern for device number n (1-based).
func DeviceID(pattern string, n int) string {
	return idPlaceholder.ReplaceAllStringFunc(pattern, func(m string) string {
		sub := idPlaceholder.FindStringSubmatch(m)
		if sub[1] == "" {
			return strconv.Itoa(n)
		}
		w, _ := strconv.Atoi(sub[1])
		return fmt.Sprintf("%0*d", w, n)
	})
}
