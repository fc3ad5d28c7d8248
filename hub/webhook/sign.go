package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Headers of a delivery.
const (
	// HeaderSignature carries "t=UNIX_SECONDS,v1=HEX" where HEX is HMAC-SHA256, keyed with the
	// webhook's secret, over the bytes "UNIX_SECONDS" "." BODY. The timestamp is the moment of
	// this attempt: a receiver refuses a delivery whose t is further than a few minutes from its
	// clock (a replayed capture), and drops an event id it has already handled (a retry).
	HeaderSignature = "Driftline-Signature"
	// HeaderEventID repeats the CloudEvents id for receivers that dedupe before parsing.
	HeaderEventID = "Driftline-Event-Id"
	// HeaderAttempt is the attempt number, 1 for the first.
	HeaderAttempt = "Driftline-Delivery-Attempt"
	// ContentType is the CloudEvents structured mode's media type.
	ContentType = "application/cloudevents+json; charset=utf-8"
)

// DefaultTolerance is how far a signature's timestamp may be from the receiver's clock.
const DefaultTolerance = 5 * time.Minute

// Errors of Verify.
var (
	// ErrNoSignature means the header is missing or has no v1 signature.
	ErrNoSignature = errors.New("webhook: no signature")
	// ErrBadSignature means no v1 signature matches the body.
	ErrBadSignature = errors.New("webhook: signature does not match")
	// ErrStale means the signature's timestamp is outside the tolerance.
	ErrStale = errors.New("webhook: signature timestamp outside tolerance")
)

// Sign returns the HeaderSignature value for body sent at t.
func Sign(secret string, t time.Time, body []byte) string {
	ts := strconv.FormatInt(t.Unix(), 10)
	return "t=" + ts + ",v1=" + mac(secret, ts, body)
}

func mac(secret, ts string, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(ts))
	m.Write([]byte{'.'})
	m.Write(body)
	return hex.EncodeToString(m.Sum(nil))
}

// Verify checks a HeaderSignature value against body, for receivers written in Go: some v1
// signature must match and the timestamp must be within tolerance of now.
func Verify(secret, header string, body []byte, now time.Time, tolerance time.Duration) error {
	var ts string
	var sigs []string
	for _, part := range strings.Split(header, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			continue
		}
		switch k {
		case "t":
			ts = v
		case "v1":
			sigs = append(sigs, v)
		}
	}
	if ts == "" || len(sigs) == 0 {
		return ErrNoSignature
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return fmt.Errorf("%w: timestamp %q", ErrNoSignature, ts)
	}
	if d := now.Sub(time.Unix(sec, 0)); d > tolerance || d < -tolerance {
		return fmt.Errorf("%w: %s", ErrStale, d.Round(time.Second))
	}
	want := mac(secret, ts, body)
	for _, s := range sigs {
		if hmac.Equal([]byte(s), []byte(want)) {
			return nil
		}
	}
	return ErrBadSignature
}
