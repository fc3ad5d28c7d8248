package clock

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestOffsetFile checks that Now follows the offset file: unset, no shift; a duration, that
// shift (read again after 100 ms); garbage or a missing file, no shift.
func TestOffsetFile(t *testing.T) {
	if d := Now().Sub(time.Now()); d > time.Second || d < -time.Second {
		t.Fatalf("without the variable Now is %v off", d)
	}
	f := filepath.Join(t.TempDir(), "offset")
	file = f
	t.Cleanup(func() { file = os.Getenv(EnvOffsetFile) })
	check := func(content string, want time.Duration) {
		t.Helper()
		if content == "" {
			_ = os.Remove(f)
		} else if err := os.WriteFile(f, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		readAt = time.Time{} // read at once, as 100 ms later
		mu.Unlock()
		got := Now().Sub(time.Now().Round(0))
		if got < want-time.Second || got > want+time.Second {
			t.Fatalf("offset file %q: Now is %v off, want %v", content, got, want)
		}
	}
	check("-1h30m\n", -90*time.Minute)
	check("2h", 2*time.Hour)
	check("soon", 0)
	check("", 0)
}
