package wire

import (
	"errors"
	"testing"
)

func TestStampSeq(t *testing.T) {
	h := Header{DeviceID: "d1", TS: 1_700_000_000_000}
	b, err := Encode(Validation{Header: h, Window: Window{Index: 4, WindowStart: h.TS, WindowEnd: h.TS}, Rows: 3, Valid: 3, ValidShare: 1})
	if err != nil {
		t.Fatal(err)
	}
	stamped, err := StampSeq(b, ReportSeq{Seq: 9, Epoch: 77, First: 5})
	if err != nil {
		t.Fatal(err)
	}
	v, err := DecodeValidation(stamped)
	if err != nil {
		t.Fatalf("decode %s: %v", stamped, err)
	}
	if v.ReportSeq != (ReportSeq{Seq: 9, Epoch: 77, First: 5}) || v.Rows != 3 || v.Index != 4 {
		t.Fatalf("decoded %+v from %s", v, stamped)
	}
	// An older hub's decoder (no ReportSeq) ignores the fields: unnumbered reports decode as before.
	v, err = DecodeValidation(b)
	if err != nil || v.Numbered() {
		t.Fatalf("unnumbered: %+v %v", v.ReportSeq, err)
	}
	if got, err := StampSeq([]byte(" {} "), ReportSeq{Seq: 1, Epoch: 1, First: 1}); err != nil || string(got) != `{"seq":1,"seq_epoch":1,"seq_first":1} ` {
		t.Fatalf("empty object: %s %v", got, err)
	}
	for _, tc := range []struct {
		name    string
		payload string
		s       ReportSeq
	}{
		{"array", `[1]`, ReportSeq{Seq: 1, Epoch: 1, First: 1}},
		{"binary", "\x28\xb5\x2f\xfd", ReportSeq{Seq: 1, Epoch: 1, First: 1}},
		{"empty", ``, ReportSeq{Seq: 1, Epoch: 1, First: 1}},
		{"zero", `{}`, ReportSeq{}},
		{"first after seq", `{}`, ReportSeq{Seq: 2, Epoch: 1, First: 3}},
		{"no epoch", `{}`, ReportSeq{Seq: 2, First: 1}},
	} {
		if _, err := StampSeq([]byte(tc.payload), tc.s); !errors.Is(err, ErrBadPayload) {
			t.Errorf("%s: err %v, want ErrBadPayload", tc.name, err)
		}
	}
	if _, err := DecodeDrift([]byte(`{"device_id":"d1","ts":1,"window":1,"window_start":1,"window_end":1,"model":"m","version":1,"seq":3,"seq_epoch":1,"seq_first":4}`)); !errors.Is(err, ErrBadPayload) {
		t.Errorf("drift with seq_first > seq: %v", err)
	}
}

func TestAck(t *testing.T) {
	a := Ack{Header: Header{DeviceID: "d1", TS: 5}, Epoch: 3, Seq: 10, Gap: true}
	b, err := Encode(a)
	if err != nil {
		t.Fatal(err)
	}
	got, err := DecodeAck(b)
	if err != nil || got != a {
		t.Fatalf("round trip %+v %v", got, err)
	}
	if _, err := DecodeAck([]byte(`{"device_id":"d1","ts":5,"seq":1}`)); !errors.Is(err, ErrBadPayload) {
		t.Fatalf("ack without epoch: %v", err)
	}
}
