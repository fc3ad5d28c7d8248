package store

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/dgraph-io/badger/v4"
	"github.com/hashicorp/raft"

	"github.com/driftline/driftline/hub/command"
	"github.com/driftline/driftline/hub/state"
	"github.com/driftline/driftline/shared/artifact"
)

// crashingProc is the state processor that panics, as a killed process stops, when it reaches
// the part of a split rollout command that starts at order crashAt.
type crashingProc struct {
	state.Processor
	crashAt int
}

func (p crashingProc) ApplyChanges(txn *badger.Txn, index uint64, env command.Envelope, emit func(any)) (any, error) {
	var part struct {
		Part *state.Part `json:"part"`
	}
	if env.DecodePayload(&part) == nil && part.Part != nil && part.Part.Stage != state.PartDiscard && part.Part.From == p.crashAt {
		panic("crash")
	}
	return p.Processor.ApplyChanges(txn, index, env, emit)
}

// splitEntry is env split by the state processor in parts of 50 devices, as one TypeBatch entry
// at index.
func splitEntry(t *testing.T, db *badger.DB, index uint64, env command.Envelope) *raft.Log {
	t.Helper()
	parts, _, err := state.Processor{PartDevices: 50}.Split(db, env)
	if err != nil || len(parts) < 10 {
		t.Fatalf("split into %d parts: %v", len(parts), err)
	}
	var b command.Batch
	for _, p := range parts {
		p.Time = env.Time
		data, err := command.Encode(p)
		if err != nil {
			t.Fatal(err)
		}
		b.Entries = append(b.Entries, data)
	}
	return &raft.Log{Index: index, Term: 1, Type: raft.LogCommand, Data: enc(t, command.TypeBatch, b)}
}

// crashIn applies entry with a processor that stops at the part starting at order crashAt, then
// restarts the applier on the same database and applies the entry again, as raft replays it.
// It checks that the crash came after some parts were committed (the position is inside the
// entry) and before the entry's end.
func crashIn(t *testing.T, db *badger.DB, entry *raft.Log, crashAt int) {
	t.Helper()
	a := newApplier(t, db, crashingProc{crashAt: crashAt})
	func() {
		defer func() {
			if r := recover(); r == nil {
				t.Fatalf("no crash at part %d", crashAt)
			}
		}()
		a.applyLogs([]*raft.Log{entry})
	}()
	b := newApplier(t, db, state.Processor{PartDevices: 50})
	if b.pos.index != entry.Index || b.pos.next == 0 || b.pos.next == entryDone {
		t.Fatalf("position after the crash %+v: want inside entry %d", b.pos, entry.Index)
	}
	out := b.applyLogs([]*raft.Log{entry})
	for i, r := range out[0].([]result) {
		if r.err != nil && !errors.Is(r.err, state.ErrConflict) {
			t.Fatalf("part %d after the restart: %v", i, r.err)
		}
	}
	if b.pos != (position{entry.Index, entryDone}) {
		t.Fatalf("position after the replay %+v", b.pos)
	}
}

// TestSplitRolloutResumesAfterCrash: a node that stops in the middle of a split rollout entry
// (some parts committed, the rest not) applies the rest of it after a restart, and only the
// rest: the plan is whole, the wave started once, nothing half-written or doubled.
func TestSplitRolloutResumesAfterCrash(t *testing.T) {
	db, err := badger.Open(badger.DefaultOptions("").WithInMemory(true).WithLogger(nil).
		WithMemTableSize(1 << 20).WithValueThreshold(64 << 10).WithNumMemtables(2))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	const devices = 2000
	var setup [][]byte
	digest, manifest := "sha256:"+strings.Repeat("ab", 32), []byte("{}")
	setup = append(setup, enc(t, command.TypeModelCreate, state.ModelCreate{Name: "m"}),
		enc(t, command.TypeChunksPut, state.ChunksPut{Chunks: []state.Chunk{{Digest: digest, Size: 4, Zstd: []byte{1}}}}),
		enc(t, command.TypeModelVersionCreate, state.ModelVersionCreate{Model: "m", Digest: digest, Size: 4,
			Chunks: []state.ChunkRef{{Digest: digest, Size: 4}}, Manifest: manifest, ManifestDigest: artifact.DigestOf(manifest)}),
		enc(t, command.TypeModelVersionApprove, state.ModelVersionApprove{Model: "m", Version: 1, Signature: state.Signature{KeyID: "k", Sig: "s"}}))
	var ids []string
	for i := range devices {
		ids = append(ids, fmt.Sprintf("d%05d", i))
		setup = append(setup, enc(t, command.TypeDeviceCreate, state.DeviceCreate{ID: ids[i], TokenHash: "h"}))
	}
	newApplier(t, db, state.Processor{}).applyLogs(logs(1, setup...))
	next := uint64(len(setup) + 1)

	create, _ := command.New(command.TypeRolloutCreate, "", 5, "t", state.RolloutCreate{ID: "r1", Model: "m", Version: 1,
		Devices: ids, WaveSizes: []int{devices}, OnGateFailure: "pause", DeviceTimeout: 600})
	crashIn(t, db, splitEntry(t, db, next, create), 1500)
	read := state.Reader{DB: db}
	r, err := read.Rollout("r1")
	if err != nil || r.Total != devices || r.Counts[state.DevPending] != devices {
		t.Fatalf("rollout after the replay: %+v, %v", r, err)
	}
	devs, err := read.RolloutDevices("r1", 0)
	if err != nil || len(devs) != devices || devs[devices-1].Order != devices-1 {
		t.Fatalf("%d rollout devices, %v", len(devs), err)
	}

	start, _ := command.New(command.TypeRolloutTransition, "", 6, "t", state.RolloutTransition{ID: "r1", Action: state.ActStartWave, FromState: state.RolloutRunning})
	crashIn(t, db, splitEntry(t, db, next+1, start), 1000)
	r, _ = read.Rollout("r1")
	if r.Wave != 1 || r.Counts[state.DevNotified] != devices || len(r.Counts) != 1 {
		t.Fatalf("after the wave start's replay: wave %d, counts %v", r.Wave, r.Counts)
	}
	d, err := read.Device(ids[devices-1])
	if err != nil || d.Desired["m"].Version != 1 {
		t.Fatalf("last device's desired %+v, %v", d.Desired, err)
	}
}
