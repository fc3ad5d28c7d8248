package wire

import (
	"bytes"
	"strconv"
)

// ReportSeq numbers a report the hub acknowledges end to end (validation, drift,
// prediction_drift and performance reports; docs/telemetry.md, "Delivery"). The agent stamps it into the report when it sends it; older
// agents send none (all fields zero) and are handled as before.
//
// Seq numbers the agent's acknowledged reports from 1 within one Epoch, without holes except
// where the agent dropped reports for its buffer's bounds; First tells the hub which: the agent
// still holds every numbered report from First on, so the hub never waits for one below it.
// Epoch changes (it only grows) when the agent starts with no unacknowledged report left, its
// numbering then starting again from 1.
type ReportSeq struct {
	Seq   uint64 `json:"seq,omitempty"`
	Epoch uint64 `json:"seq_epoch,omitempty"`
	First uint64 `json:"seq_first,omitempty"`
}

// Numbered reports whether the report carries a sequence number.
func (s ReportSeq) Numbered() bool { return s.Seq != 0 || s.Epoch != 0 || s.First != 0 }

// Validate checks that a numbered report has all three fields with 1 <= First <= Seq.
func (s ReportSeq) Validate() error {
	if !s.Numbered() {
		return nil
	}
	if s.Epoch == 0 {
		return bad("seq_epoch", "required with seq")
	}
	if s.Seq == 0 || s.First == 0 || s.First > s.Seq {
		return bad("seq_first", "must be within 1..seq (%d), got %d", s.Seq, s.First)
	}
	return nil
}

// StampSeq returns payload, a JSON object, with s's fields added in front of its own. It
// returns an error wrapping ErrBadPayload when payload is not a JSON object or s is invalid.
// A payload that has these fields already keeps its own values (encoding/json keeps a key's
// last occurrence), so stamp only payloads built without them.
func StampSeq(payload []byte, s ReportSeq) ([]byte, error) {
	if !s.Numbered() {
		return nil, bad("seq", "required")
	}
	if err := s.Validate(); err != nil {
		return nil, err
	}
	body := bytes.TrimLeft(payload, " \t\r\n")
	if len(body) < 2 || body[0] != '{' {
		return nil, bad("payload", "not a JSON object")
	}
	rest := bytes.TrimLeft(body[1:], " \t\r\n")
	out := make([]byte, 0, len(payload)+80)
	out = append(out, `{"seq":`...)
	out = strconv.AppendUint(out, s.Seq, 10)
	out = append(out, `,"seq_epoch":`...)
	out = strconv.AppendUint(out, s.Epoch, 10)
	out = append(out, `,"seq_first":`...)
	out = strconv.AppendUint(out, s.First, 10)
	if len(rest) > 0 && rest[0] != '}' {
		out = append(out, ',')
	}
	return append(out, rest...), nil
}

// Ack is the PREFIX/dev/{id}/ack message, from the hub: every numbered report of Epoch up to
// and including Seq is stored in the replicated state, so the agent may forget it. Gap says the
// hub also holds reports after Seq but is missing Seq+1: the agent should send again from there.
// An Ack of another epoch than the agent's current one is stale and ignored.
type Ack struct {
	Header
	Epoch uint64 `json:"seq_epoch"`
	Seq   uint64 `json:"seq"`
	Gap   bool   `json:"gap,omitempty"`
}

// Validate checks the header and that the epoch is set.
func (a Ack) Validate() error {
	if err := a.Header.Validate(); err != nil {
		return err
	}
	if a.Epoch == 0 {
		return bad("seq_epoch", "required")
	}
	return nil
}

// DecodeAck parses and validates an ack payload.
func DecodeAck(b []byte) (Ack, error) { return decode[Ack](b) }
