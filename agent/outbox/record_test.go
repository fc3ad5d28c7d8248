package outbox

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/driftline/driftline/shared/zstdx"
)

var recordCases = []struct {
	name string
	rec  record
}{
	{"plain", record{at: time.UnixMilli(1_700_000_000_123), topic: "dl/v1/dev/a/validation", payload: []byte(`{"rows":3}`), qos: 1}},
	{"retained qos0 empty payload", record{at: time.UnixMilli(0), topic: "t", payload: []byte{}, retain: true}},
	{"numbered", record{at: time.UnixMilli(1_700_000_000_123), topic: "dl/v1/dev/a/drift", payload: []byte(`{"rows":3}`), qos: 1, num: 1 << 40}},
	{"binary", record{at: time.UnixMilli(42), topic: "dl/v1/dev/a/profile", payload: bytes.Repeat([]byte{0, 1, 2, 0xff}, 5000), qos: 2}},
}

func TestRecordRoundTrip(t *testing.T) {
	for _, tc := range recordCases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := decodeRecord(encodeRecord(tc.rec))
			if err != nil {
				t.Fatal(err)
			}
			if !got.at.Equal(tc.rec.at) || got.topic != tc.rec.topic || !bytes.Equal(got.payload, tc.rec.payload) ||
				got.qos != tc.rec.qos || got.retain != tc.rec.retain || got.num != tc.rec.num {
				t.Fatalf("round trip: got %+v, want %+v", got, tc.rec)
			}
		})
	}
}

// TestDecodeRecordV1 reads a record queued by an agent from before reports were numbered.
func TestDecodeRecordV1(t *testing.T) {
	v1 := []byte{1, 0, 0, 0, 0, 0, 0, 0, 42, 1, 0, 1, 't'}
	v1 = zstdx.Encode(v1, []byte(`{"a":1}`))
	r, err := decodeRecord(v1)
	if err != nil || r.topic != "t" || r.qos != 1 || r.num != 0 || string(r.payload) != `{"a":1}` || r.at.UnixMilli() != 42 {
		t.Fatalf("v1 record: %+v %v", r, err)
	}
}

func TestDecodeRecordErrors(t *testing.T) {
	good := encodeRecord(recordCases[0].rec)
	tests := []struct {
		name string
		b    []byte
	}{
		{"empty", nil},
		{"short header", good[:5]},
		{"bad version", append([]byte{9}, good[1:]...)},
		{"bad flags", func() []byte { b := bytes.Clone(good); b[9] = 0x80; return b }()},
		{"qos 3", func() []byte { b := bytes.Clone(good); b[9] = 3; return b }()},
		{"topic truncated", good[:headerLen+3]},
		{"no frame", good[:headerLen+len(recordCases[0].rec.topic)]},
		{"bad frame", append(bytes.Clone(good[:headerLen+len(recordCases[0].rec.topic)]), 1, 2, 3, 4, 5, 6)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := decodeRecord(tc.b); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("decodeRecord = %v, want ErrCorrupt", err)
			}
		})
	}
}

func FuzzDecodeRecord(f *testing.F) {
	for _, tc := range recordCases {
		f.Add(encodeRecord(tc.rec))
	}
	f.Add([]byte{1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := decodeRecord(b)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error does not wrap ErrCorrupt: %v", err)
			}
			return
		}
		again, err := decodeRecord(encodeRecord(r))
		if err != nil || again.topic != r.topic || !bytes.Equal(again.payload, r.payload) {
			t.Fatalf("re-encode of a decoded record failed: %v", err)
		}
	})
}
