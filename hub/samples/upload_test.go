package samples

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"

	"github.com/driftline/driftline/hub/command"
	"github.com/driftline/driftline/hub/state"
	"github.com/driftline/driftline/shared/wire"
)

// acks records the sample acks the collector publishes.
type acks struct {
	mu  sync.Mutex
	got []wire.SampleAck
}

func (a *acks) publish(topic string, b []byte) error {
	ack, err := wire.DecodeSampleAck(b)
	if err != nil {
		return err
	}
	if topic != wire.Default().SampleAck(ack.DeviceID) {
		return fmt.Errorf("ack on %s", topic)
	}
	a.mu.Lock()
	a.got = append(a.got, ack)
	a.mu.Unlock()
	return nil
}

func (a *acks) all() []wire.SampleAck {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]wire.SampleAck(nil), a.got...)
}

// TestUploadAssembledCheckedAcked: a sample larger than one frame arrives as chunk frames, out
// of order; a whole whose bytes do not match the frames' digest is dropped without an ack; the
// real one is staged once and acknowledged, and a repeat of it (the device missed the ack) is
// acknowledged again without a second staging.
func TestUploadAssembledCheckedAcked(t *testing.T) {
	f := newFixture(t, true)
	rec := &acks{}
	f.c.cfg.Publish = rec.publish
	f.trainedModel(t)
	f.st.Must(t, command.TypeDeviceCreate, state.DeviceCreate{ID: "d1", TokenHash: "hd1"})

	s := wire.Sample{Header: wire.Header{DeviceID: "d1", TS: 1}, Window: wire.Window{Index: 1, WindowStart: 1, WindowEnd: 1000},
		ModelRef: wire.ModelRef{Model: "m2", Version: 1}, Reason: "input_drift", WindowRows: wire.MaxSampleRows}
	for i := range wire.MaxSampleRows {
		s.Rows = append(s.Rows, json.RawMessage(fmt.Sprintf(`{"temp":%.15f}`, 40+float64(i)/7)))
	}
	payload, err := wire.Encode(s)
	if err != nil {
		t.Fatal(err)
	}
	frames, err := wire.DataFrames("s-up1", payload)
	if err != nil {
		t.Fatal(err)
	}
	if len(frames) < 2 {
		t.Fatalf("a sample of %d bytes is %d frame: the test needs more than one", len(payload), len(frames))
	}
	ctx := context.Background()
	drain := func() int {
		n := 0
		for {
			select {
			case st := <-f.c.queue:
				f.c.stage(ctx, st)
				n++
			default:
				return n
			}
		}
	}

	// Forged: the last part's bytes changed under the real digest.
	forged := append([]byte(nil), payload...)
	forged[len(forged)-10] ^= 1
	ff, err := wire.DataFrames("s-up1", forged)
	if err != nil {
		t.Fatal(err)
	}
	last, err := wire.DecodeFrame(ff[len(ff)-1])
	if err != nil {
		t.Fatal(err)
	}
	first, _ := wire.DecodeFrame(frames[0])
	last.Digest = first.Digest
	tampered, err := wire.EncodeFrame(last)
	if err != nil {
		t.Fatal(err)
	}
	for _, fr := range frames[:len(frames)-1] {
		f.c.HandlePart("d1", fr)
	}
	f.c.HandlePart("d1", tampered)
	if n := drain(); n != 0 || len(rec.all()) != 0 {
		t.Fatalf("a whole that fails its digest: %d staged, acks %+v", n, rec.all())
	}

	// The real frames, last first.
	for i := len(frames) - 1; i >= 0; i-- {
		f.c.HandlePart("d1", frames[i])
	}
	if n := drain(); n != 1 {
		t.Fatalf("%d samples queued, want 1", n)
	}
	got := rec.all()
	if len(got) != 1 || got[0].Status != wire.SampleStored || got[0].UploadID != "s-up1" || got[0].Digest != first.DigestString() {
		t.Fatalf("acks %+v", got)
	}
	staged, _ := f.st.Reader().StagedSamples()
	if len(staged) != 1 || len(staged[0].Rows) != wire.MaxSampleRows {
		t.Fatalf("staged %d samples", len(staged))
	}

	// A repeat of the whole upload: acknowledged again, not staged again.
	for _, fr := range frames {
		f.c.HandlePart("d1", fr)
	}
	drain()
	if got := rec.all(); len(got) != 2 || got[1] != got[0] && (got[1].UploadID != "s-up1" || got[1].Status != wire.SampleStored) {
		t.Fatalf("acks after a repeat %+v", got)
	}
	if staged, _ := f.st.Reader().StagedSamples(); len(staged) != 1 {
		t.Fatalf("a repeat staged again: %d", len(staged))
	}
}

// FuzzHandlePart: any bytes on a device's sample_part topic are refused or assembled, never a
// panic, and the open uploads stay within their bounds.
func FuzzHandlePart(f *testing.F) {
	frames, _ := wire.DataFrames("s-f", []byte(`{"device_id":"d1"}`))
	for _, fr := range frames {
		f.Add(fr)
	}
	f.Add([]byte("DLCF"))
	c := New(Config{Store: nil, LeaderOnly: false, Queue: 4})
	f.Fuzz(func(t *testing.T, b []byte) {
		c.HandlePart("d1", b)
		for len(c.queue) > 0 {
			<-c.queue
		}
		c.upMu.Lock()
		defer c.upMu.Unlock()
		if len(c.open) > MaxOpenUploads || c.openBytes > MaxOpenBytes {
			t.Fatalf("%d open uploads, %d bytes", len(c.open), c.openBytes)
		}
	})
}
