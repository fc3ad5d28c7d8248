package samples

import (
	"bytes"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/driftline/driftline/agent/devicedb"
	"github.com/driftline/driftline/shared/wire"
)

// TestUploaderKeepsUntilAcked: an upload larger than one frame is queued as bounded frames that
// reassemble to the sample; without the hub's ack it is queued again after ResendAfter (and
// survives a restart of the uploader); an ack for other bytes does not end it, the right one
// does, and a refused one does too.
func TestUploaderKeepsUntilAcked(t *testing.T) {
	db, err := devicedb.OpenInMemory()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	now := time.Unix(1_700_000_000, 0)
	rep := &reporter{}
	opts := UploadOptions{DeviceID: "d1", Reporter: rep, State: db.Namespace("up"), ResendAfter: time.Minute,
		Now: func() time.Time { return now }, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	u, err := NewUploader(opts)
	if err != nil {
		t.Fatal(err)
	}
	payload := bytes.Repeat([]byte("0123456789abcdef"), (wire.MaxPartSize*2+1000)/16)
	id, err := u.Upload(payload)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.frames) != 3 || len(rep.msgs) != 1 || !bytes.Equal(rep.msgs[0], payload) {
		t.Fatalf("%d frames, %d whole uploads: want 3 frames making the payload", len(rep.frames), len(rep.msgs))
	}
	for _, fr := range rep.frames {
		if len(fr) > wire.MaxFrameSize {
			t.Fatalf("frame of %d bytes", len(fr))
		}
	}
	f, _ := wire.DecodeFrame(rep.frames[0])
	u.sweep(false)
	if len(rep.frames) != 3 {
		t.Fatal("sent again before ResendAfter")
	}
	// A restart: a new uploader on the same state resends what is due.
	now = now.Add(2 * time.Minute)
	u, err = NewUploader(opts)
	if err != nil {
		t.Fatal(err)
	}
	u.sweep(true)
	if len(rep.frames) != 6 || len(rep.msgs) != 2 || !bytes.Equal(rep.msgs[1], payload) {
		t.Fatalf("after ResendAfter: %d frames, %d uploads", len(rep.frames), len(rep.msgs))
	}
	ack := func(digest, status string) []byte {
		b, err := wire.Encode(wire.SampleAck{Header: wire.Header{DeviceID: "d1", TS: 1}, UploadID: id, Digest: digest, Status: status})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	u.ack(ack("sha256:"+string(bytes.Repeat([]byte("0"), 64)), wire.SampleStored))
	if p := u.Pending(); len(p) != 1 {
		t.Fatalf("an ack of other bytes ended the upload: pending %v", p)
	}
	u.ack(ack(f.DigestString(), wire.SampleStored))
	if p := u.Pending(); len(p) != 0 {
		t.Fatalf("pending after the ack: %v", p)
	}
	n := 0
	_ = opts.State.Sub("parts").IterateKeys(false, func([]byte, int64) error { n++; return nil })
	if n != 0 {
		t.Fatalf("%d frames kept after the ack", n)
	}
	// Refused: forgotten as well.
	id, _ = u.Upload([]byte(`{"x":1}`))
	g, _ := wire.DecodeFrame(rep.frames[len(rep.frames)-1])
	u.ack(ack(g.DigestString(), wire.SampleRefused))
	if p := u.Pending(); len(p) != 0 {
		t.Fatalf("pending after a refusal: %v", p)
	}
}
