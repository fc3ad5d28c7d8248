package config_test

import (
	"errors"
	"testing"

	"github.com/driftline/driftline/agent/config"
)

// FuzzParse: any input gives a valid Config or an ErrSyntax/ErrInvalid/ErrTooLarge error,
// never a panic; an accepted Config passes Validate on its own.
func FuzzParse(f *testing.F) {
	for _, s := range []string{minimal, "", "a: &x [1]\nb: *x\n", minimal + "heartbeat: 0.5\nfetch: {requests: 3}\n",
		minimal + "window:\n  rows: 1\n  seconds: 1\n", "- 1\n", "device_id: [\n", minimal + "buffer: {max_age: 1h}\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := config.Parse(b)
		if err != nil {
			if !errors.Is(err, config.ErrSyntax) && !errors.Is(err, config.ErrInvalid) && !errors.Is(err, config.ErrTooLarge) {
				t.Fatalf("unclassified error: %v", err)
			}
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("accepted config fails Validate: %v", err)
		}
	})
}
