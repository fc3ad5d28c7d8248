package wire

import (
	"bytes"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/driftline/driftline/shared/artifact"
)

// decoder adapts a typed decoder to the table.
type decoder func([]byte) (Payload, error)

func as[T Payload](fn func([]byte) (T, error)) decoder {
	return func(b []byte) (Payload, error) {
		v, err := fn(b)
		if err != nil {
			return nil, err
		}
		return v, nil
	}
}

var (
	decStatus       = as(DecodeStatus)
	decHeartbeat    = as(DecodeHeartbeat)
	decValidation   = as(DecodeValidation)
	decDrift        = as(DecodeDrift)
	decDriftFeature = as(decode[DriftFeature])
	decDesired      = as(DecodeDesired)
	decReported     = as(DecodeReported)
	decFetch        = as(DecodeFetchRequest)
	decFleetRollout = as(decode[FleetRollout])
	decFleetDrift   = as(decode[FleetDrift])
)

const hdr = `"device_id":"d1","ts":1700000000000`

var (
	h1      = Header{DeviceID: "d1", TS: 1700000000000}
	w1      = Window{Index: 3, WindowStart: 1699999940000, WindowEnd: 1700000000000}
	win     = `"window":3,"window_start":1699999940000,"window_end":1700000000000`
	dig1    = artifact.DigestOf([]byte("manifest"))
	dig2    = artifact.DigestOf([]byte("contract"))
	three   = 3
	two     = 2
	psi     = 0.25
	ks      = 0.31
	sigGood = artifact.Signature{KeyID: "ed25519:0123456789abcdef", Sig: "c2ln"}
)

// payloadCases is the one table of JSON payloads: raw bytes, the decoded value, the expected
// error. Decode tests read every row; encode tests the rows without an error, which must
// encode to exactly raw.
var payloadCases = []struct {
	name string
	dec  decoder
	raw  string
	want Payload
	err  error
}{
	// status
	{"status online", decStatus, `{` + hdr + `,"online":true,"agent_version":"0.1.0","started_ts":1699999999000,"reason":"connect"}`,
		Status{Header: h1, Online: true, AgentVersion: "0.1.0", StartedTS: 1699999999000, Reason: ReasonConnect}, nil},
	{"status will", decStatus, `{` + hdr + `,"online":false,"reason":"will"}`, Status{Header: h1, Reason: ReasonWill}, nil},
	{"status without device", decStatus, `{"ts":1,"online":true}`, nil, ErrBadName},
	{"status with wildcard device", decStatus, `{"device_id":"a+b","ts":1,"online":true}`, nil, ErrBadName},
	{"status without ts", decStatus, `{"device_id":"d1","online":true}`, nil, ErrBadPayload},
	{"status ts as string", decStatus, `{"device_id":"d1","ts":"now","online":true}`, nil, ErrBadPayload},
	{"status trailing data", decStatus, `{` + hdr + `,"online":true} x`, nil, ErrBadPayload},
	{"status not an object", decStatus, `[1,2]`, nil, ErrBadPayload},
	{"status empty", decStatus, ``, nil, ErrBadPayload},
	{"status unknown field ignored", decStatus, `{` + hdr + `,"online":true,"future":1}`, Status{Header: h1, Online: true}, nil},

	// heartbeat
	{"heartbeat", decHeartbeat, `{` + hdr + `,"uptime_s":60,"agent_version":"0.1.0","active_models":["iris@3"],"buffer_depth":2,"buffer_bytes":4096,"buffer_dropped":0,"records_seen":1000,"records_invalid":7,"quarantine_depth":7,"cpu":3.5,"rss":25000000}`,
		Heartbeat{Header: h1, UptimeS: 60, AgentVersion: "0.1.0", ActiveModels: []string{"iris@3"}, BufferDepth: 2, BufferBytes: 4096, RecordsSeen: 1000, RecordsInvalid: 7, QuarantineDepth: 7, CPU: 3.5, RSS: 25000000}, nil},
	{"heartbeat negative counter", decHeartbeat, `{` + hdr + `,"buffer_depth":-1}`, nil, ErrBadPayload},
	{"heartbeat negative cpu", decHeartbeat, `{` + hdr + `,"cpu":-0.5}`, nil, ErrBadPayload},
	{"heartbeat huge number", decHeartbeat, `{` + hdr + `,"cpu":1e999}`, nil, ErrBadPayload},

	// validation
	{"validation", decValidation, `{` + hdr + `,` + win + `,"model":"iris","version":3,"dataset":"flowers","dataset_version":2,"rows":100,"valid":97,"invalid":3,"valid_share":0.97,"violations":{"petal_len":{"maximum":2,"required":1}},"quarantined":3,"quarantine_evicted":0}`,
		Validation{Header: h1, Window: w1, ModelRef: ModelRef{Model: "iris", Version: 3, Dataset: "flowers", DatasetVersion: 2}, Rows: 100, Valid: 97, Invalid: 3, ValidShare: 0.97,
			Violations: map[string]map[string]int64{"petal_len": {"maximum": 2, "required": 1}}, Quarantined: 3}, nil},
	{"validation before any model", decValidation, `{` + hdr + `,` + win + `,"rows":0,"valid":0,"invalid":0,"valid_share":1,"violations":{},"quarantined":0,"quarantine_evicted":0}`,
		Validation{Header: h1, Window: w1, ValidShare: 1, Violations: map[string]map[string]int64{}}, nil},
	{"validation counts disagree", decValidation, `{` + hdr + `,` + win + `,"rows":10,"valid":9,"invalid":2,"valid_share":0.9}`, nil, ErrBadPayload},
	{"validation window zero", decValidation, `{` + hdr + `,"window":0,"window_start":1,"window_end":1,"valid_share":1}`, nil, ErrBadPayload},
	{"validation window ends before it starts", decValidation, `{` + hdr + `,"window":1,"window_start":5,"window_end":4,"valid_share":1}`, nil, ErrBadPayload},
	{"validation share over one", decValidation, `{` + hdr + `,` + win + `,"valid_share":1.5}`, nil, ErrBadPayload},
	{"validation version without model", decValidation, `{` + hdr + `,` + win + `,"version":2,"valid_share":1}`, nil, ErrBadPayload},
	{"validation bad rule name", decValidation, `{` + hdr + `,` + win + `,"rows":1,"invalid":1,"valid_share":0,"violations":{"f":{"Max Imum":1}}}`, nil, ErrBadPayload},
	{"validation zero violation count", decValidation, `{` + hdr + `,` + win + `,"rows":1,"invalid":1,"valid_share":0,"violations":{"f":{"maximum":0}}}`, nil, ErrBadPayload},

	// drift
	{"drift", decDrift, `{` + hdr + `,` + win + `,"model":"iris","version":3,"rows":100,"dataset_drift":1,"drift_share":0.5,"features":4,"drifted_features":2,"drifted":["a","b"]}`,
		Drift{Header: h1, Window: w1, ModelRef: ModelRef{Model: "iris", Version: 3}, Rows: 100, DatasetDrift: 1, DriftShare: 0.5, Features: 4, DriftedFeatures: 2, Drifted: []string{"a", "b"}}, nil},
	{"drift without model", decDrift, `{` + hdr + `,` + win + `,"rows":1,"features":1}`, nil, ErrBadPayload},
	{"drift flag not 0/1", decDrift, `{` + hdr + `,` + win + `,"model":"iris","version":3,"dataset_drift":2,"features":1}`, nil, ErrBadPayload},
	{"drift more drifted than features", decDrift, `{` + hdr + `,` + win + `,"model":"iris","version":3,"features":1,"drifted_features":2}`, nil, ErrBadPayload},

	// drift per feature
	{"drift feature numeric", decDriftFeature, `{` + hdr + `,` + win + `,"model":"iris","version":3,"feature":"temp","method":"ks","score":0.01,"threshold":0.05,"drift":1,"rows":100,"psi":0.25,"ks":0.31}`,
		DriftFeature{Header: h1, Window: w1, ModelRef: ModelRef{Model: "iris", Version: 3}, Feature: "temp", Method: "ks", Score: 0.01, Threshold: 0.05, Drift: 1, Rows: 100, PSI: &psi, KS: &ks}, nil},
	{"drift feature categorical calibrated", decDriftFeature, `{` + hdr + `,` + win + `,"model":"iris","version":3,"feature":"site","method":"jensen_shannon","score":0.02,"threshold":0.13,"drift":0,"calibrated":true,"rows":50}`,
		DriftFeature{Header: h1, Window: w1, ModelRef: ModelRef{Model: "iris", Version: 3}, Feature: "site", Method: "jensen_shannon", Score: 0.02, Threshold: 0.13, Calibrated: true, Rows: 50}, nil},
	{"drift feature without method", decDriftFeature, `{` + hdr + `,` + win + `,"model":"iris","version":3,"feature":"temp"}`, nil, ErrBadPayload},
	{"drift feature name with slash", decDriftFeature, `{` + hdr + `,` + win + `,"model":"iris","version":3,"feature":"a/b","method":"ks"}`, nil, ErrBadName},

	// desired
	{"desired", decDesired, `{` + hdr + `,"rev":7,"models":[{"name":"iris","version":3,"manifest_digest":"` + dig1 + `","size":1048576,"signature":{"key_id":"ed25519:0123456789abcdef","sig":"c2ln"},"approval":{"key_id":"ed25519:0123456789abcdef","sig":"c2ln"},"contract_digest":"` + dig2 + `","dataset":"flowers","dataset_version":2,"rollout_id":"r-1"}]}`,
		Desired{Header: h1, Rev: 7, Models: []DesiredModel{{Name: "iris", Version: 3, ManifestDigest: dig1, Size: 1 << 20, LegacySignature: sigGood, ApprovalSignature: sigGood, ContractDigest: dig2, Dataset: "flowers", DatasetVersion: 2, RolloutID: "r-1"}}}, nil},
	{"desired nothing", decDesired, `{` + hdr + `,"rev":1,"models":[]}`, Desired{Header: h1, Rev: 1, Models: []DesiredModel{}}, nil},
	{"desired rev zero", decDesired, `{` + hdr + `,"rev":0,"models":[]}`, nil, ErrBadPayload},
	{"desired negative rev", decDesired, `{` + hdr + `,"rev":-1,"models":[]}`, nil, ErrBadPayload},
	{"desired bad digest", decDesired, `{` + hdr + `,"rev":1,"models":[{"name":"iris","version":1,"manifest_digest":"sha256:00"}]}`, nil, ErrBadPayload},
	{"desired model twice", decDesired, `{` + hdr + `,"rev":1,"models":[{"name":"m","version":1,"manifest_digest":"` + dig1 + `"},{"name":"m","version":2,"manifest_digest":"` + dig1 + `"}]}`, nil, ErrBadPayload},
	{"desired version zero", decDesired, `{` + hdr + `,"rev":1,"models":[{"name":"m","version":0,"manifest_digest":"` + dig1 + `"}]}`, nil, ErrBadPayload},

	// reported
	{"reported", decReported, `{` + hdr + `,"rev":7,"agent_version":"0.1.0","models":{"iris":{"active":3,"previous":2,"state":"active","since":1700000000000},"new":{"active":null,"previous":null,"target":1,"state":"failed","last_error":"health check: exit 1"}}}`,
		Reported{Header: h1, Rev: 7, AgentVersion: "0.1.0", Models: map[string]ReportedModel{
			"iris": {Active: &three, Previous: &two, State: StateActive, Since: 1700000000000},
			"new":  {Target: 1, State: StateFailed, LastError: "health check: exit 1"},
		}}, nil},
	{"reported unknown state", decReported, `{` + hdr + `,"rev":1,"models":{"m":{"active":null,"previous":null,"state":"done"}}}`, nil, ErrBadPayload},
	{"reported active zero", decReported, `{` + hdr + `,"rev":1,"models":{"m":{"active":0,"previous":null,"state":"active"}}}`, nil, ErrBadPayload},
	{"reported progress beyond total", decReported, `{` + hdr + `,"rev":1,"models":{"m":{"active":null,"previous":null,"state":"downloading","bytes_done":9,"bytes_total":8}}}`, nil, ErrBadPayload},

	// fetch
	{"fetch", decFetch, `{` + hdr + `,"request_id":"3f2a-01","digests":["` + dig1 + `","` + dig2 + `"]}`,
		FetchRequest{Header: h1, RequestID: "3f2a-01", Digests: []string{dig1, dig2}}, nil},
	{"fetch nothing", decFetch, `{` + hdr + `,"request_id":"r","digests":[]}`, nil, ErrBadPayload},
	{"fetch duplicate", decFetch, `{` + hdr + `,"request_id":"r","digests":["` + dig1 + `","` + dig1 + `"]}`, nil, ErrBadPayload},
	{"fetch bad request id", decFetch, `{` + hdr + `,"request_id":"a b","digests":["` + dig1 + `"]}`, nil, ErrBadName},
	{"fetch shared", decFetch, `{` + hdr + `,"request_id":"r","digests":["` + dig1 + `"],"shared":"iris","shared_sub":"9c1e02b7"}`,
		FetchRequest{Header: h1, RequestID: "r", Digests: []string{dig1}, Shared: "iris", SharedSub: "9c1e02b7"}, nil},
	{"fetch shared without subscription id", decFetch, `{` + hdr + `,"request_id":"r","digests":["` + dig1 + `"],"shared":"iris"}`, nil, ErrBadName},
	{"fetch shared wildcard model", decFetch, `{` + hdr + `,"request_id":"r","digests":["` + dig1 + `"],"shared":"+","shared_sub":"s"}`, nil, ErrBadName},
	{"fetch upper-case digest", decFetch, `{` + hdr + `,"request_id":"r","digests":["` + strings.ToUpper(dig1) + `"]}`, nil, ErrBadPayload},

	// fleet
	{"fleet rollout", decFleetRollout, `{"ts":1700000000000,"rollout_id":"r-1","model":"iris","version":3,"state":"running","wave":2,"waves":4,"devices":{"active":5,"downloading":1,"pending":4},"total":10,"gates":{"max_failure_rate":{"value":0,"threshold":0.1,"failed":false}}}`,
		FleetRollout{TS: 1700000000000, RolloutID: "r-1", Model: "iris", Version: 3, State: "running", Wave: 2, Waves: 4,
			Devices: map[State]int64{StateActive: 5, StateDownloading: 1, StatePending: 4}, Total: 10,
			Gates: map[string]Gate{"max_failure_rate": {Threshold: 0.1}}}, nil},
	{"fleet rollout counts over total", decFleetRollout, `{"ts":1,"rollout_id":"r","model":"m","version":1,"state":"running","wave":1,"waves":1,"devices":{"active":5,"failed":6},"total":10}`, nil, ErrBadPayload},
	{"fleet rollout unknown device state", decFleetRollout, `{"ts":1,"rollout_id":"r","model":"m","version":1,"state":"running","wave":1,"waves":1,"devices":{"gone":1},"total":10}`, nil, ErrBadPayload},
	{"fleet rollout wave beyond waves", decFleetRollout, `{"ts":1,"rollout_id":"r","model":"m","version":1,"state":"running","wave":3,"waves":2,"total":0}`, nil, ErrBadPayload},
	{"fleet drift", decFleetDrift, `{"ts":1700000000000,"model":"iris","version":3,"devices":10,"drifting_devices":2,"dataset_drift":0,"drift_share":0.25,"features":{"temp":{"method":"wasserstein","score":0.2,"threshold":0.1,"drift":1,"devices":2}}}`,
		FleetDrift{TS: 1700000000000, Model: "iris", Version: 3, Devices: 10, DriftingDevices: 2, DriftShare: 0.25,
			Features: map[string]FleetFeature{"temp": {Method: "wasserstein", Score: 0.2, Threshold: 0.1, Drift: 1, Devices: 2}}}, nil},
	{"fleet drift more drifting than devices", decFleetDrift, `{"ts":1,"model":"m","version":1,"devices":1,"drifting_devices":2}`, nil, ErrBadPayload},
}

func TestDecodePayloads(t *testing.T) {
	for _, tc := range payloadCases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.dec([]byte(tc.raw))
			if tc.err != nil {
				if !errors.Is(err, tc.err) || !errors.Is(err, ErrBadPayload) {
					t.Fatalf("err %v, want %v (and ErrBadPayload)", err, tc.err)
				}
				t.Log(err)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("decoded\n%#v\nwant\n%#v", got, tc.want)
			}
		})
	}
}

func TestEncodePayloads(t *testing.T) {
	for _, tc := range payloadCases {
		if tc.err != nil || strings.Contains(tc.name, "ignored") {
			continue
		}
		t.Run(tc.name, func(t *testing.T) {
			b, err := Encode(tc.want)
			if err != nil {
				t.Fatal(err)
			}
			if string(b) != tc.raw {
				t.Fatalf("encoded\n%s\nwant\n%s", b, tc.raw)
			}
		})
	}
}

func TestEncodeRefusesInvalid(t *testing.T) {
	cases := []struct {
		name string
		p    Payload
	}{
		{"status without device", Status{Header: Header{TS: 1}}},
		{"desired rev zero", Desired{Header: h1}},
		{"fetch without digests", FetchRequest{Header: h1, RequestID: "r"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := Encode(tc.p); !errors.Is(err, ErrBadPayload) {
				t.Fatalf("err %v, want ErrBadPayload", err)
			}
		})
	}
}

func TestDecodeOversize(t *testing.T) {
	b := []byte(`{` + hdr + `,"online":true,"agent_version":"` + strings.Repeat("x", MaxPayloadSize) + `"}`)
	if _, err := DecodeStatus(b); !errors.Is(err, ErrBadPayload) {
		t.Fatalf("err %v, want ErrBadPayload", err)
	}
}

func TestMatchTopic(t *testing.T) {
	if err := h1.MatchTopic("d1"); err != nil {
		t.Fatal(err)
	}
	if err := h1.MatchTopic("d2"); !errors.Is(err, ErrDeviceMismatch) {
		t.Fatalf("err %v, want ErrDeviceMismatch", err)
	}
}

// fuzzDecoder runs one decoder on arbitrary bytes: it must not panic, must wrap ErrBadPayload
// on failure, and what it accepts must encode, and that encoding decode to the same value.
func fuzzDecoder(f *testing.F, dec decoder) {
	for _, tc := range payloadCases {
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
		v2, err := dec(again)
		if err != nil {
			t.Fatalf("own encoding %s of accepted %q does not decode: %v", again, b, err)
		}
		// Compare encodings: omitempty folds an empty map and a nil one together.
		if third, err := Encode(v2); err != nil || !bytes.Equal(third, again) {
			t.Fatalf("round trip of %q: %s, then %s (%v)", b, again, third, err)
		}
	})
}

func FuzzDecodeStatus(f *testing.F)       { fuzzDecoder(f, decStatus) }
func FuzzDecodeHeartbeat(f *testing.F)    { fuzzDecoder(f, decHeartbeat) }
func FuzzDecodeValidation(f *testing.F)   { fuzzDecoder(f, decValidation) }
func FuzzDecodeDrift(f *testing.F)        { fuzzDecoder(f, decDrift) }
func FuzzDecodeDriftFeature(f *testing.F) { fuzzDecoder(f, decDriftFeature) }
func FuzzDecodeDesired(f *testing.F)      { fuzzDecoder(f, decDesired) }
func FuzzDecodeReported(f *testing.F)     { fuzzDecoder(f, decReported) }
func FuzzDecodeFetchRequest(f *testing.F) { fuzzDecoder(f, decFetch) }
func FuzzDecodeFleetRollout(f *testing.F) { fuzzDecoder(f, decFleetRollout) }
func FuzzDecodeFleetDrift(f *testing.F)   { fuzzDecoder(f, decFleetDrift) }
