package samples

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/driftline/driftline/agent/devicedb"
	"github.com/driftline/driftline/internal/testhelp"
)

// TestUploaderWakesWhenDue: the uploader sends an upload again when its ResendAfter is due,
// not at its next periodic look (a tick of an hour here): it waits for the next due upload
// instead of listing the store every few seconds, which thousands of fleet-mode agents did all
// at once.
func TestUploaderWakesWhenDue(t *testing.T) {
	db, err := devicedb.OpenInMemory()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	rep := &reporter{}
	u, err := NewUploader(UploadOptions{DeviceID: "d1", Reporter: rep, State: db.Namespace("up"), ResendAfter: 200 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { u.Run(ctx, time.Hour); close(done) }()
	defer func() { cancel(); <-done }()
	if _, err := u.Upload([]byte(`{"rows":[]}`)); err != nil {
		t.Fatal(err)
	}
	frames := func() int {
		rep.mu.Lock()
		defer rep.mu.Unlock()
		return len(rep.frames)
	}
	testhelp.WaitFor(t, 10*time.Second, "the upload sent again once due", func() bool { return frames() >= 2 })
}
