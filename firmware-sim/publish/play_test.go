package publish

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/driftline/driftline/firmware-sim/sim"
)

// recorder is a Device that records what Play asks of it, in order.
type recorder struct{ calls []string }

func (r *recorder) Send(_ context.Context, m sim.Message) error {
	r.calls = append(r.calls, "send")
	return nil
}
func (r *recorder) Disconnect()                   { r.calls = append(r.calls, "disconnect") }
func (r *recorder) Connect(context.Context) error { r.calls = append(r.calls, "connect"); return nil }

func stream(t *testing.T, yaml string) *sim.Stream {
	t.Helper()
	s, err := sim.Parse([]byte(yaml), ".")
	if err != nil {
		t.Fatal(err)
	}
	f, err := sim.NewFleet(s, sim.Options{Devices: 1, Seed: 1, Start: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	return f.Stream(0)
}

// TestPlayDisconnect checks the order of sends around a disconnect window and that Online is
// left as found, also when the run ends inside the window.
func TestPlayDisconnect(t *testing.T) {
	const yaml = "rate: 50\nduration: 200ms\nfields:\n  - {name: x, dist: normal}\nevents:\n  - {kind: disconnect, at: 60ms, duration: 60ms}\n"
	var stats Stats
	stats.Online.Store(1)
	r := &recorder{}
	if err := Play(context.Background(), stream(t, yaml), time.Now(), r, &stats); err != nil {
		t.Fatal(err)
	}
	got := strings.Join(r.calls, ",")
	want := "send,send,send,disconnect,connect,send,send,send,send"
	if got != want {
		t.Fatalf("calls %s, want %s", got, want)
	}
	if stats.Online.Load() != 1 || stats.Disconnects.Load() != 1 || stats.Messages.Load() != 7 {
		t.Fatalf("online %d, disconnects %d, messages %d", stats.Online.Load(), stats.Disconnects.Load(), stats.Messages.Load())
	}

	// The run ends inside a long window: Online is restored.
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	stats.Online.Store(1)
	err := Play(ctx, stream(t, "rate: 50\nfields:\n  - {name: x, dist: normal}\nevents:\n  - {kind: disconnect, at: 20ms, duration: 1h}\n"), time.Now(), &recorder{}, &stats)
	if err == nil || stats.Online.Load() != 1 {
		t.Fatalf("err %v, online %d", err, stats.Online.Load())
	}
}
