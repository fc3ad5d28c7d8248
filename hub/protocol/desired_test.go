package protocol

import (
	"io"
	"log/slog"
	"sync"
	"testing"

	"github.com/dgraph-io/badger/v4"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/driftline/driftline/hub/command"
	"github.com/driftline/driftline/hub/state"
	"github.com/driftline/driftline/shared/kv"
	"github.com/driftline/driftline/shared/wire"
)

// recorder is a Transport that records the topics published to.
type recorder struct {
	mu     sync.Mutex
	topics []string
}

func (r *recorder) Publish(topic string, _ []byte, _ bool, _ byte) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.topics = append(r.topics, topic)
	return nil
}

func (r *recorder) Subscribe(string, func(string, []byte)) error { return nil }

func (r *recorder) take() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	t := r.topics
	r.topics = nil
	return t
}

// TestDesiredRepairPass: the first pass publishes every device's desired state, a repeated pass
// publishes nothing new, and the periodic repair pass publishes again only the devices whose
// agents have not reported acting on their revision.
func TestDesiredRepairPass(t *testing.T) {
	db, err := kv.Open("", kv.Test)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	index := uint64(0)
	apply := func(typ command.Type, body any) {
		t.Helper()
		index++
		env, err := command.New(typ, "", 1_700_000_000_000+int64(index), "alice", body)
		if err != nil {
			t.Fatal(err)
		}
		var aerr error
		if err := db.Update(func(txn *badger.Txn) error {
			_, aerr = state.Processor{}.Apply(txn, index, env)
			return aerr
		}); err != nil {
			t.Fatalf("apply %d: %v", typ, err)
		}
	}
	const digest = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	apply(command.TypeModelCreate, state.ModelCreate{Name: "m"})
	apply(command.TypeChunksPut, state.ChunksPut{Chunks: []state.Chunk{{Digest: digest, Size: 10, Zstd: []byte{1}}}})
	apply(command.TypeModelVersionCreate, state.ModelVersionCreate{Model: "m", Digest: digest, Size: 10,
		Chunks: []state.ChunkRef{{Digest: digest, Size: 10}}, Manifest: []byte("{}"), ManifestDigest: digest})
	apply(command.TypeModelVersionApprove, state.ModelVersionApprove{Model: "m", Version: 1,
		Signature: state.Signature{KeyID: "k", Sig: "s"}})
	for _, id := range []string{"acked", "behind"} {
		apply(command.TypeDeviceCreate, state.DeviceCreate{ID: id, TokenHash: "h-" + id})
		apply(command.TypeDeviceDesiredSet, state.DeviceDesiredSet{ID: id, Model: "m", Version: 1})
	}
	acked, err := state.Reader{DB: db}.Device("acked")
	if err != nil {
		t.Fatal(err)
	}
	apply(command.TypeDeviceTelemetry, state.DeviceTelemetry{Devices: []state.DeviceObservation{
		{ID: "acked", Reported: &state.Reported{Rev: acked.DesiredRev}},
	}})

	tr := &recorder{}
	s := &Service{cfg: Config{Transport: tr, Reader: state.Reader{DB: db}, Topics: wire.Default()},
		log: slog.New(slog.NewTextHandler(io.Discard, nil)), m: newMetrics(prometheus.NewRegistry())}
	p := newDesiredPublisher(s)
	topics := wire.Default()

	p.publishAll(false)
	if got := tr.take(); len(got) != 2 {
		t.Fatalf("first pass published %v, want both devices", got)
	}
	p.publishAll(false)
	if got := tr.take(); len(got) != 0 {
		t.Fatalf("second pass published %v, want nothing", got)
	}
	p.publishAll(true)
	if got := tr.take(); len(got) != 1 || got[0] != topics.Desired("behind") {
		t.Fatalf("repair pass published %v, want only %s", got, topics.Desired("behind"))
	}
}
