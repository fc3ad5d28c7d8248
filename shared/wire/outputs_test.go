package wire

import (
	"errors"
	"testing"
)

// outputCases are the output reports' codec cases: raw bytes and whether they decode.
var outputCases = []struct {
	name string
	dec  decoder
	raw  string
	ok   bool
}{
	{"prediction drift", as(DecodePredictionDrift), `{` + hdr + `,` + win + `,"model":"m","version":1,"prediction":"pred","rows":10,"invalid":0,"method":"chisquare","score":0.01,"threshold":0.05,"calibrated":false,"drift":1}`, true},
	{"prediction drift without model", as(DecodePredictionDrift), `{` + hdr + `,` + win + `,"prediction":"pred","rows":10,"invalid":0,"method":"ks","score":0.01,"threshold":0.05,"calibrated":false,"drift":0}`, false},
	{"prediction drift flag 2", as(DecodePredictionDrift), `{` + hdr + `,` + win + `,"model":"m","version":1,"prediction":"pred","rows":10,"invalid":0,"method":"ks","score":0.01,"threshold":0.05,"calibrated":false,"drift":2}`, false},
	{"performance", as(DecodePerformance), `{` + hdr + `,` + win + `,"model":"m","version":1,"task":"regression","metric":"mae","labels":5,"value":1.5,"reference":1,"relative":0.6666666666666666,"mae":1.5,"rmse":2,"pending_predictions":0,"pending_labels":0,"expired":0,"duplicates":0}`, true},
	{"performance without labels", as(DecodePerformance), `{` + hdr + `,` + win + `,"model":"m","version":1,"task":"regression","metric":"mae","labels":0,"value":1.5,"reference":1,"relative":1,"pending_predictions":0,"pending_labels":0,"expired":0,"duplicates":0}`, false},
	{"sample ack", as(DecodeSampleAck), `{` + hdr + `,"upload_id":"s-1","digest":"sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08","status":"stored"}`, true},
	{"sample ack refused", as(DecodeSampleAck), `{` + hdr + `,"upload_id":"s-1","digest":"sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08","status":"refused","error":"no"}`, true},
	{"sample ack bad status", as(DecodeSampleAck), `{` + hdr + `,"upload_id":"s-1","digest":"sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08","status":"maybe"}`, false},
	{"sample ack bad digest", as(DecodeSampleAck), `{` + hdr + `,"upload_id":"s-1","digest":"sha256:xyz","status":"stored"}`, false},
	{"sample ack bad upload id", as(DecodeSampleAck), `{` + hdr + `,"upload_id":"s/1","digest":"sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08","status":"stored"}`, false},
	{"performance bad metric", as(DecodePerformance), `{` + hdr + `,` + win + `,"model":"m","version":1,"task":"regression","metric":"auc","labels":3,"value":1,"reference":1,"relative":1,"pending_predictions":0,"pending_labels":0,"expired":0,"duplicates":0}`, false},
	{"sample", as(DecodeSample), `{` + hdr + `,` + win + `,"model":"m","version":1,"reason":"input_drift","window_rows":100,"rows":[{"temp":1}],"invalid":0}`, true},
	{"sample row not an object", as(DecodeSample), `{` + hdr + `,` + win + `,"model":"m","version":1,"reason":"input_drift","window_rows":100,"rows":[1],"invalid":0}`, false},
	{"sample no rows", as(DecodeSample), `{` + hdr + `,` + win + `,"model":"m","version":1,"reason":"input_drift","window_rows":100,"rows":[],"invalid":0}`, false},
	{"sample bad reason", as(DecodeSample), `{` + hdr + `,` + win + `,"model":"m","version":1,"reason":"boredom","window_rows":100,"rows":[{"a":1}],"invalid":0}`, false},
}

func TestOutputPayloads(t *testing.T) {
	for _, tc := range outputCases {
		t.Run(tc.name, func(t *testing.T) {
			v, err := tc.dec([]byte(tc.raw))
			if tc.ok != (err == nil) {
				t.Fatalf("decode: %v, want ok=%v", err, tc.ok)
			}
			if err != nil {
				if !errors.Is(err, ErrBadPayload) {
					t.Fatalf("%v does not wrap ErrBadPayload", err)
				}
				return
			}
			b, err := Encode(v)
			if err != nil || string(b) != tc.raw {
				t.Fatalf("encode: %s (%v), want %s", b, err, tc.raw)
			}
		})
	}
	for _, k := range []Kind{KindPredictionDrift, KindPerformance, KindSample} {
		topic := Default().dev("d1", k.String())
		got, id, _, err := Default().Parse(topic)
		if err != nil || got != k || id != "d1" || k.FromHub() || k.Retained() || k.Binary() {
			t.Fatalf("%s: %v %v %s", topic, err, got, id)
		}
	}
	// Issue 20's binary device kinds and the hub's receipt.
	for k, want := range map[Kind]struct{ fromHub, binary bool }{KindPredictionProfile: {false, true}, KindSamplePart: {false, true}, KindSampleAck: {true, false}} {
		topic := Default().dev("d1", k.String())
		got, id, _, err := Default().Parse(topic)
		if err != nil || got != k || id != "d1" || k.FromHub() != want.fromHub || k.Binary() != want.binary || k.Retained() {
			t.Fatalf("%s: %v %v %s", topic, err, got, id)
		}
	}
	if k, _, extra, err := Default().Parse(Default().FleetPredictionDrift("clf")); err != nil || k != KindFleetPredictionDrift || extra != "clf" || !k.FromHub() {
		t.Fatalf("fleet prediction drift topic: %v %v %q", err, k, extra)
	}
}

func fuzzOutputs(f *testing.F, dec decoder) {
	for _, tc := range outputCases {
		f.Add([]byte(tc.raw))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		v, err := dec(b)
		if err != nil {
			if !errors.Is(err, ErrBadPayload) {
				t.Fatalf("error %v does not wrap ErrBadPayload", err)
			}
			return
		}
		again, err := Encode(v)
		if err != nil {
			t.Fatalf("accepted %q but cannot encode it: %v", b, err)
		}
		if _, err := dec(again); err != nil {
			t.Fatalf("own encoding %s does not decode: %v", again, err)
		}
	})
}

func FuzzDecodePredictionDrift(f *testing.F) { fuzzOutputs(f, as(DecodePredictionDrift)) }
func FuzzDecodePerformance(f *testing.F)     { fuzzOutputs(f, as(DecodePerformance)) }
func FuzzDecodeSample(f *testing.F)          { fuzzOutputs(f, as(DecodeSample)) }
func FuzzDecodeSampleAck(f *testing.F)       { fuzzOutputs(f, as(DecodeSampleAck)) }
