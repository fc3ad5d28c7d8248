package node

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/driftline/driftline/hub/api"
	"github.com/driftline/driftline/hub/command"
	"github.com/driftline/driftline/hub/state"
	"github.com/driftline/driftline/internal/testhelp"
)

// chunkCount counts the chunks in the node's state.
func chunkCount(t *testing.T, n *Node) int {
	t.Helper()
	c := 0
	err := n.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte("fsm/chunk/")})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			c++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestAbortedUploadChunksSwept: the chunks an upload stored before it was cut off are deleted by
// the leader's sweep once older than the grace period; a registered version keeps its chunks.
func TestAbortedUploadChunksSwept(t *testing.T) {
	n, tok := testNode(t)
	call(t, n, tok, http.MethodPost, "/api/v1/models", map[string]string{"name": "m"}, http.StatusCreated, nil)
	kept := make([]byte, 512<<10)
	rand.Read(kept)
	pushModel(t, n, tok, "m", kept)
	base := chunkCount(t, n)

	// An upload cut off after 24 MiB: the hub stores what arrived in chunk batches.
	pr, pw := io.Pipe()
	mw := multipart.NewWriter(pw)
	go func() {
		fw, _ := mw.CreateFormFile("artifact", "big.bin")
		buf := make([]byte, 1<<20)
		for i := 0; i < 24; i++ {
			rand.Read(buf)
			if _, err := fw.Write(buf); err != nil {
				return
			}
		}
		pw.CloseWithError(errors.New("client gave up"))
	}()
	req, _ := http.NewRequest(http.MethodPost, n.URL()+"/api/v1/models/m/versions", pr)
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	if res, err := http.DefaultClient.Do(req); err == nil {
		res.Body.Close()
		if res.StatusCode == http.StatusCreated {
			t.Fatal("a cut-off upload was registered")
		}
	}
	// The handler may still be storing what it read: wait until it has answered.
	testhelp.WaitFor(t, 30*time.Second, "the aborted upload's handler answered", func() bool {
		mfs, _ := n.registry.Gather()
		for _, mf := range mfs {
			if mf.GetName() != api.MetricRequests {
				continue
			}
			for _, m := range mf.GetMetric() {
				l := map[string]string{}
				for _, p := range m.GetLabel() {
					l[p.GetName()] = p.GetValue()
				}
				if l["method"] == "POST" && strings.HasSuffix(l["route"], "/versions") && l["code"] != "201" && m.GetCounter().GetValue() > 0 {
					return true
				}
			}
		}
		return false
	})
	orphans := chunkCount(t, n) - base
	if orphans <= 0 {
		t.Fatalf("the aborted upload stored no chunks (%d); the test needs some", orphans)
	}
	if got, err := n.sweepChunks(context.Background(), chunkSweepGrace); err != nil || got != 0 {
		t.Fatalf("sweep within the grace period deleted %d (%v)", got, err)
	}
	// Batches the handler proposed before it gave up may still land: sweep until none is left.
	deleted := 0
	testhelp.WaitFor(t, 30*time.Second, "every orphan swept", func() bool {
		got, err := n.sweepChunks(context.Background(), 0)
		if err != nil {
			t.Fatal(err)
		}
		deleted += got
		return chunkCount(t, n) == base
	})
	if deleted < orphans {
		t.Fatalf("sweeps deleted %d chunks, %d orphans were counted", deleted, orphans)
	}
	// The registered version is whole.
	req, _ = http.NewRequest(http.MethodGet, n.URL()+"/api/v1/models/m/versions/1/artifact", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusOK || len(body) != len(kept) {
		t.Fatalf("the registered version after the sweep: %d, %d bytes", res.StatusCode, len(body))
	}
}

// TestSweepManyChunksInBoundedCommands: the chunks of an aborted upload of ~900 MB (14,000
// chunks: more deletes than one transaction of the state machine holds) are all deleted, in
// commands of at most state.SweepChunksPerCommand chunks; one sweep of them all was refused as
// too big for one transaction and left them for ever.
func TestSweepManyChunksInBoundedCommands(t *testing.T) {
	n, _ := testNode(t)
	ctx := context.Background()
	base := chunkCount(t, n)
	const total, batch = 14_000, 1000
	for i := 0; i < total; i += batch {
		var c state.ChunksPut
		for j := i; j < i+batch; j++ {
			c.Chunks = append(c.Chunks, state.Chunk{Digest: fmt.Sprintf("sha256:%064x", j), Size: 1, Zstd: []byte{1}})
		}
		env, err := command.New(command.TypeChunksPut, "", 0, "tester", c)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := n.store.Apply(ctx, env); err != nil {
			t.Fatal(err)
		}
	}
	if got := chunkCount(t, n); got != base+total {
		t.Fatalf("%d chunks stored, want %d", got, base+total)
	}
	deleted, err := n.sweepChunksBefore(ctx, time.Now().Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if deleted != total || chunkCount(t, n) != base {
		t.Fatalf("swept %d of %d chunks, %d left beside the %d kept", deleted, total, chunkCount(t, n)-base, base)
	}
}
