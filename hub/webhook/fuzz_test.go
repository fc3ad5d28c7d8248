package webhook_test

import (
	"testing"
	"time"

	"github.com/driftline/driftline/hub/webhook"
)

// FuzzVerify: any header and body are verified or refused, never a panic; a header made by Sign
// for the body always verifies.
func FuzzVerify(f *testing.F) {
	now := time.Unix(1_800_000_000, 0)
	f.Add("t=1800000000,v1=00", []byte("{}"))
	f.Add(webhook.Sign(secret, now, []byte(`{"a":1}`)), []byte(`{"a":1}`))
	f.Add("t=,v1=,v1", []byte(nil))
	f.Fuzz(func(t *testing.T, header string, body []byte) {
		_ = webhook.Verify(secret, header, body, now, time.Minute)
		if err := webhook.Verify(secret, webhook.Sign(secret, now, body), body, now, time.Minute); err != nil {
			t.Fatalf("own signature refused: %v", err)
		}
	})
}
