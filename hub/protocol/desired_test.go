package protocol

import (
	"io"
	"log/slog"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/driftline/driftline/hub/command"
	"github.com/driftline/driftline/hub/state"
	"github.com/driftline/driftline/hub/state/statetest"
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
	st := statetest.New(t)
	st.ApprovedModel(t, "m", 1)
	for _, id := range []string{"acked", "behind"} {
		st.Must(t, command.TypeDeviceCreate, state.DeviceCreate{ID: id, TokenHash: "h-" + id})
		st.Must(t, command.TypeDeviceDesiredSet, state.DeviceDesiredSet{ID: id, Model: "m", Version: 1})
	}
	acked, err := st.Reader().Device("acked")
	if err != nil {
		t.Fatal(err)
	}
	st.Must(t, command.TypeDeviceTelemetry, state.DeviceTelemetry{Devices: []state.DeviceObservation{
		{ID: "acked", Reported: &state.Reported{Rev: acked.DesiredRev}},
	}})

	tr := &recorder{}
	s := &Service{cfg: Config{Transport: tr, Reader: st.Reader(), Topics: wire.Default()},
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
