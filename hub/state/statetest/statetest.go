// Package statetest applies commands to an in-memory state database with the real state
// processor, one transaction per command, the way the Raft FSM does on the leader: for the tests
// of the packages that act on the state (the rollout controller, the protocol's publishers).
// (hub/state's own tests keep a harness inside the package, which cannot import this one.)
package statetest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/driftline/driftline/hub/command"
	"github.com/driftline/driftline/hub/state"
	"github.com/driftline/driftline/hub/store"
	"github.com/driftline/driftline/shared/artifact"
	"github.com/driftline/driftline/shared/kv"
)

// Store is a leader that applies commands to DB at once. It is safe for concurrent use.
type Store struct {
	DB *badger.DB
	// Now stamps commands that carry no time (default time.Now).
	Now func() time.Time
	// Changes receives the changes of every command applied, after its commit, as the store's
	// feed does on every node.
	Changes *store.Feed

	// Proc is the processor applied (its PartDevices bounds the parts of split rollout
	// commands).
	Proc state.Processor
	// Unsplit, when set, plays a cluster with a node that does not know the parts' types (a
	// rolling upgrade): a command the processor would split is applied whole, and when it is too
	// big its error carries store.ErrNotSplit, as the store answers (store.ClusterKnows).
	Unsplit error

	mu    sync.Mutex
	index uint64
}

// New opens an in-memory database, closed when t ends.
func New(t testing.TB) *Store {
	t.Helper()
	db, err := kv.Open("", kv.Test)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return &Store{DB: db, Now: time.Now, Changes: store.NewFeed()}
}

// NewSmall is New with badger memtables of memTable bytes, so a transaction holds at most 15 %
// of that: commands too big for one transaction show up with a few thousand devices.
func NewSmall(t testing.TB, memTable int64) *Store {
	t.Helper()
	db, err := badger.Open(kv.Options("", kv.Test).WithMemTableSize(memTable).WithValueThreshold(memTable / 16))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return &Store{DB: db, Now: time.Now, Changes: store.NewFeed()}
}

// NewOptions is New on a database opened with opts (the hub's own options on a temporary
// directory: kv.Options(t.TempDir(), kv.State)), closed when t ends.
func NewOptions(t testing.TB, opts badger.Options) *Store {
	t.Helper()
	db, err := badger.Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return &Store{DB: db, Now: time.Now, Changes: store.NewFeed()}
}

// Reader reads the store's state.
func (s *Store) Reader() state.Reader { return state.Reader{DB: s.DB} }

// IsLeader is always true.
func (s *Store) IsLeader() bool { return true }

// Index is the log index of the last command applied.
func (s *Store) Index() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.index
}

// Apply applies env in a transaction of its own and returns the processor's result. A command
// the processor splits (store.Splitter) is applied part after part, each in its own transaction
// under one log index, as the store applies the parts of one entry.
func (s *Store) Apply(_ context.Context, env command.Envelope) (any, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.index++
	if env.Time == 0 {
		env.Time = s.Now().UnixMilli()
	}
	parts, result, err := s.Proc.Split(s.DB, env)
	if err != nil {
		return nil, err
	}
	if len(parts) > 0 && s.Unsplit != nil {
		res, err := s.applyOne(env)
		if errors.Is(err, store.ErrCommandTooBig) {
			err = fmt.Errorf("%w (%w: %w)", err, store.ErrNotSplit, s.Unsplit)
		}
		return res, err
	}
	if len(parts) == 0 {
		return s.applyOne(env)
	}
	vals, errs := make([]any, len(parts)), make([]error, len(parts))
	for i, p := range parts {
		p.Time = env.Time
		vals[i], errs[i] = s.applyOne(p)
	}
	return store.PartsResult(vals, errs, result)
}

func (s *Store) applyOne(env command.Envelope) (any, error) {
	var res any
	var aerr error
	var changes []store.Change
	err := s.DB.Update(func(txn *badger.Txn) error {
		changes = changes[:0]
		res, aerr = s.Proc.ApplyChanges(txn, s.index, env, func(ev any) {
			changes = append(changes, store.Change{Index: s.index, Event: ev})
		})
		if errors.Is(aerr, badger.ErrTxnTooBig) {
			return aerr // nothing of it is committed, as in the store
		}
		return nil
	})
	if errors.Is(err, badger.ErrTxnTooBig) {
		return nil, fmt.Errorf("%w: %v", store.ErrCommandTooBig, err) // what the store answers
	}
	if err != nil {
		return nil, err
	}
	if aerr == nil {
		s.Changes.Publish(changes)
	}
	return res, aerr
}

// Must applies a command of type typ with body on behalf of "tester", failing t on an error.
func (s *Store) Must(t testing.TB, typ command.Type, body any) any {
	t.Helper()
	env, err := command.New(typ, "", 0, "tester", body)
	if err != nil {
		t.Fatal(err)
	}
	res, err := s.Apply(context.Background(), env)
	if err != nil {
		t.Fatalf("apply %d: %v", typ, err)
	}
	return res
}

// ApprovedModel registers model name with versions approved versions of a tiny artifact.
func (s *Store) ApprovedModel(t testing.TB, name string, versions int) {
	t.Helper()
	digest, manifest := "sha256:"+strings.Repeat("ab", 32), []byte("{}")
	s.Must(t, command.TypeModelCreate, state.ModelCreate{Name: name})
	s.Must(t, command.TypeChunksPut, state.ChunksPut{Chunks: []state.Chunk{{Digest: digest, Size: 4, Zstd: []byte{1}}}})
	for v := 1; v <= versions; v++ {
		s.Must(t, command.TypeModelVersionCreate, state.ModelVersionCreate{Model: name, Digest: digest, Size: 4,
			Chunks: []state.ChunkRef{{Digest: digest, Size: 4}}, Manifest: manifest, ManifestDigest: artifact.DigestOf(manifest)})
		s.Must(t, command.TypeModelVersionApprove, state.ModelVersionApprove{Model: name, Version: v,
			Signature: state.Signature{KeyID: "k", Sig: "s"}})
	}
}
