package wire

import (
	"errors"
	"strings"
	"testing"
)

func TestTopicsBuildAndParse(t *testing.T) {
	tp := Default()
	cases := []struct {
		topic  string
		kind   Kind
		device string
		extra  string
	}{
		{tp.Status("pump-7"), KindStatus, "pump-7", ""},
		{tp.Heartbeat("pump-7"), KindHeartbeat, "pump-7", ""},
		{tp.Data("pump-7"), KindData, "pump-7", ""},
		{tp.Validation("pump-7"), KindValidation, "pump-7", ""},
		{tp.Drift("pump-7"), KindDrift, "pump-7", ""},
		{tp.DriftFeature("pump-7", "temp c"), KindDriftFeature, "pump-7", "temp c"},
		{tp.Profile("pump-7"), KindProfile, "pump-7", ""},
		{tp.Desired("pump-7"), KindDesired, "pump-7", ""},
		{tp.Reported("pump-7"), KindReported, "pump-7", ""},
		{tp.Fetch("pump-7"), KindFetch, "pump-7", ""},
		{tp.Chunk("pump-7"), KindChunk, "pump-7", ""},
		{tp.Ack("pump-7"), KindAck, "pump-7", ""},
		{tp.FleetRollout("r-1"), KindFleetRollout, "", "r-1"},
		{tp.FleetDrift("iris"), KindFleetDrift, "", "iris"},
		{tp.ModelChunk("iris"), KindModelChunk, "", "iris"},
	}
	for _, tc := range cases {
		t.Run(tc.topic, func(t *testing.T) {
			if !strings.HasPrefix(tc.topic, "dl/v1/") {
				t.Fatalf("topic %q not under dl/v1/", tc.topic)
			}
			k, dev, extra, err := tp.Parse(tc.topic)
			if err != nil {
				t.Fatal(err)
			}
			if k != tc.kind || dev != tc.device || extra != tc.extra {
				t.Fatalf("Parse = %v %q %q, want %v %q %q", k, dev, extra, tc.kind, tc.device, tc.extra)
			}
		})
	}
	if got := tp.Heartbeat("a"); got != "dl/v1/dev/a/heartbeat" {
		t.Errorf("Heartbeat = %q", got)
	}
	if got := tp.DriftFeature("a", "f"); got != "dl/v1/dev/a/drift/f" {
		t.Errorf("DriftFeature = %q", got)
	}
}

func TestTopicsParseErrors(t *testing.T) {
	tp := Default()
	cases := []struct {
		topic string
		want  error
	}{
		{"other/v1/dev/a/status", ErrForeignTopic},
		{"dl/v1", ErrForeignTopic},
		{"dl/v10/dev/a/status", ErrForeignTopic},
		{"dl/v1/dev/a", ErrUnknownTopic},
		{"dl/v1/dev/a/nope", ErrUnknownTopic},
		{"dl/v1/dev/a/status/extra", ErrUnknownTopic},
		{"dl/v1/dev/a/drift/f/g", ErrUnknownTopic},
		{"dl/v1/fleet/rollouts", ErrUnknownTopic},
		{"dl/v1/fleet/other/x", ErrUnknownTopic},
		{"dl/v1/dev//status", ErrBadName},
		{"dl/v1/dev/+/status", ErrBadName},
		{"dl/v1/dev/#/status", ErrBadName},
		{"dl/v1/dev/a/drift/", ErrBadName},
		{"dl/v1/dev/a/drift/+", ErrBadName},
		{"dl/v1/dev/a\x00b/status", ErrBadName},
		{"dl/v1/dev/" + strings.Repeat("x", MaxNameLen+1) + "/status", ErrBadName},
		{"dl/v1/fleet/drift/", ErrBadName},
	}
	for _, tc := range cases {
		t.Run(tc.topic, func(t *testing.T) {
			_, _, _, err := tp.Parse(tc.topic)
			if !errors.Is(err, tc.want) {
				t.Fatalf("err %v, want %v", err, tc.want)
			}
		})
	}
}

func TestNewTopics(t *testing.T) {
	cases := []struct {
		prefix string
		ok     bool
	}{
		{"dl/v1", true},
		{"site-a/dl/v1", true},
		{"", false},
		{"/dl", false},
		{"dl/", false},
		{"dl//v1", false},
		{"dl/+", false},
		{"dl/#", false},
		{"$SYS/dl", false},
	}
	for _, tc := range cases {
		t.Run(tc.prefix, func(t *testing.T) {
			tp, err := NewTopics(tc.prefix)
			if tc.ok != (err == nil) {
				t.Fatalf("err %v, want ok=%v", err, tc.ok)
			}
			if err != nil {
				if !errors.Is(err, ErrBadPrefix) {
					t.Fatalf("err %v does not wrap ErrBadPrefix", err)
				}
				return
			}
			k, dev, _, err := tp.Parse(tp.Reported("d1"))
			if err != nil || k != KindReported || dev != "d1" {
				t.Fatalf("round trip under %q: %v %q %v", tc.prefix, k, dev, err)
			}
			if _, _, _, err := tp.Parse(Default().Reported("d1")); tc.prefix != DefaultPrefix && !errors.Is(err, ErrForeignTopic) {
				t.Fatalf("topic under the default prefix parsed under %q: %v", tc.prefix, err)
			}
		})
	}
}

func TestKindRules(t *testing.T) {
	tp := Default()
	cases := []struct {
		kind                   Kind
		qos                    byte
		retained, bin, fromHub bool
		filter                 string
	}{
		{KindStatus, 1, true, false, false, "dl/v1/dev/+/status"},
		{KindHeartbeat, 0, false, false, false, "dl/v1/dev/+/heartbeat"},
		{KindData, 1, false, false, false, "dl/v1/dev/+/data"},
		{KindValidation, 1, false, false, false, "dl/v1/dev/+/validation"},
		{KindDrift, 1, false, false, false, "dl/v1/dev/+/drift"},
		{KindDriftFeature, 1, false, false, false, "dl/v1/dev/+/drift/+"},
		{KindProfile, 1, false, true, false, "dl/v1/dev/+/profile"},
		{KindDesired, 1, true, false, true, "dl/v1/dev/+/desired"},
		{KindReported, 1, true, false, false, "dl/v1/dev/+/reported"},
		{KindFetch, 1, false, false, false, "dl/v1/dev/+/fetch"},
		{KindChunk, 1, false, true, true, "dl/v1/dev/+/chunk"},
		{KindFleetRollout, 1, true, false, true, "dl/v1/fleet/rollouts/+"},
		{KindFleetDrift, 1, false, false, true, "dl/v1/fleet/drift/+"},
		{KindAck, 1, false, false, true, "dl/v1/dev/+/ack"},
		{KindModelChunk, 1, false, true, true, "dl/v1/model/+/chunk"},
		{KindUnknown, 1, false, false, false, ""},
	}
	for _, tc := range cases {
		t.Run(tc.kind.String(), func(t *testing.T) {
			if tc.kind.QoS() != tc.qos || tc.kind.Retained() != tc.retained || tc.kind.Binary() != tc.bin || tc.kind.FromHub() != tc.fromHub {
				t.Errorf("QoS %d retained %v binary %v fromHub %v", tc.kind.QoS(), tc.kind.Retained(), tc.kind.Binary(), tc.kind.FromHub())
			}
			if got := tp.AllDevices(tc.kind); got != tc.filter {
				t.Errorf("AllDevices = %q, want %q", got, tc.filter)
			}
		})
	}
	if tp.Device("d") != "dl/v1/dev/d/#" || tp.All() != "dl/v1/#" || tp.DevicePrefix("d") != "dl/v1/dev/d/" {
		t.Error("filters")
	}
}

func TestStates(t *testing.T) {
	want := "pending notified downloading activating active failed rolled_back"
	var got []string
	for _, s := range States {
		if !s.Valid() {
			t.Errorf("%q not valid", s)
		}
		got = append(got, string(s))
	}
	if strings.Join(got, " ") != want {
		t.Errorf("States = %v, want %s", got, want)
	}
	if State("done").Valid() || State("").Valid() {
		t.Error("unknown state valid")
	}
}

func FuzzParseTopic(f *testing.F) {
	tp := Default()
	for _, s := range []string{tp.Status("a"), tp.DriftFeature("a", "b"), tp.FleetDrift("m"), "dl/v1/dev//x", "dl/v1/#"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, topic string) {
		k, dev, extra, err := tp.Parse(topic)
		if err != nil {
			if !errors.Is(err, ErrForeignTopic) && !errors.Is(err, ErrUnknownTopic) && !errors.Is(err, ErrBadName) {
				t.Fatalf("error %v wraps no sentinel", err)
			}
			return
		}
		var rebuilt string
		switch k {
		case KindDriftFeature:
			rebuilt = tp.DriftFeature(dev, extra)
		case KindFleetRollout:
			rebuilt = tp.FleetRollout(extra)
		case KindFleetDrift:
			rebuilt = tp.FleetDrift(extra)
		case KindModelChunk:
			rebuilt = tp.ModelChunk(extra)
		default:
			rebuilt = tp.dev(dev, k.String())
		}
		if rebuilt != topic {
			t.Fatalf("Parse(%q) = %v %q %q, which builds %q", topic, k, dev, extra, rebuilt)
		}
	})
}
