package reconcile

import (
	"bytes"
	"context"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/driftline/driftline/agent/config"
	"github.com/driftline/driftline/internal/testhelp"
	"github.com/driftline/driftline/shared/wire"
)

// TestReadersNotBlockedBySlowRecordWrite: while the reconciler writes a model record (a disk
// commit, which in a fleet process queues behind thousands of agents' commits), the readers the
// pipeline and the heartbeat call on every reading and beat (ActiveModels, ActiveNames,
// Reported) answer at once: no lock they need is held across the write.
func TestReadersNotBlockedBySlowRecordWrite(t *testing.T) {
	r := newRig(t, config.Default().Fetch)
	ctx := context.Background()
	v1, _ := r.conn.version(r.key, "m", 1, bytes.Repeat([]byte("version one "), 20000))
	if _, err := r.rc.handleDesired(ctx, desired(t, 1, v1)); err != nil {
		t.Fatal(err)
	}

	held, release := holdNotifiedWrite(r)
	v2, _ := r.conn.version(r.key, "m", 2, bytes.Repeat([]byte("version two "), 20000))
	done := make(chan error, 1)
	go func() {
		_, err := r.rc.handleDesired(ctx, desired(t, 2, v2))
		done <- err
	}()
	<-held // revision 2's state notified is being written

	read := make(chan string, 1)
	go func() {
		ms, err := r.rc.ActiveModels()
		if err != nil || len(ms) != 1 || ms[0].Version != 1 {
			t.Errorf("ActiveModels during the write = %+v, %v; want m@1", ms, err)
		}
		names := r.rc.ActiveNames()
		_, models := r.rc.Reported()
		read <- names[0] + " " + string(models["m"].State)
	}()
	select {
	case got := <-read:
		if got != "m@1 notified" {
			t.Errorf("readers during the write saw %q, want m@1 notified", got)
		}
	case <-time.After(5 * time.Second):
		t.Error("ActiveModels, ActiveNames and Reported blocked by a model record being written")
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if ms, _ := r.rc.ActiveModels(); len(ms) != 1 || ms[0].Version != 2 {
		t.Fatalf("after revision 2: %+v, want m@2", ms)
	}
}

// TestPullStagesObserved: a pull observes each stage it reaches once, in order, as the time since
// its desired state was taken up (a table hub: no shared topic, so no listening stage).
func TestPullStagesObserved(t *testing.T) {
	r := newRig(t, config.Default().Fetch)
	h := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "s"}, []string{"stage"})
	r.rc.m.PullStages = h
	v1, _ := r.conn.version(r.key, "m", 1, bytes.Repeat([]byte("version one "), 20000))
	if _, err := r.rc.handleDesired(context.Background(), desired(t, 1, v1)); err != nil {
		t.Fatal(err)
	}
	prev := 0.0
	for _, st := range Stages {
		var m dto.Metric
		if err := h.WithLabelValues(st).(prometheus.Metric).Write(&m); err != nil {
			t.Fatal(err)
		}
		n, sum := m.Histogram.GetSampleCount(), m.Histogram.GetSampleSum()
		if st == StageListening {
			if n != 0 {
				t.Errorf("stage %s observed %d times without a shared topic", st, n)
			}
			continue
		}
		if n != 1 || sum < prev {
			t.Errorf("stage %s: %d observations, %.4f s (previous stage %.4f s); want one, not before the previous", st, n, sum, prev)
		}
		prev = sum
	}
}

// TestPullNotBlockedBySlowRecordWrite: with write-behind on (the agent's connected loop flushes
// the records after each change), a state change's record is written beside the pull, not on its
// way: with the write of state notified held, the pull fetches and verifies the manifest; once the
// write lands, the pull completes and the records on disk say active.
func TestPullNotBlockedBySlowRecordWrite(t *testing.T) {
	r := newRig(t, config.Default().Fetch)
	h := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "s"}, []string{"stage"})
	r.rc.m.PullStages = h
	held, release := holdNotifiedWrite(r)
	// The agent's part: flush the records after each change, on another goroutine.
	kick := make(chan struct{}, 1)
	r.rc.cfg.OnChange = func() {
		select {
		case kick <- struct{}{}:
		default:
		}
	}
	r.rc.SetWriteBehind(true)
	ctx, cancel := context.WithCancel(context.Background())
	done, flushed := make(chan struct{}), make(chan struct{})
	go func() { r.rc.Run(ctx); close(done) }()
	go func() {
		defer close(flushed)
		for {
			select {
			case <-ctx.Done():
				r.rc.SetWriteBehind(false)
				r.rc.FlushRecords()
				return
			case <-kick:
				r.rc.FlushRecords()
			}
		}
	}()
	defer func() { cancel(); <-done; <-flushed }()
	var releaseOnce sync.Once
	unhold := func() { releaseOnce.Do(func() { close(release) }) }
	defer unhold() // runs first: a failed wait must not leave Run stuck in the write

	v1, _ := r.conn.version(r.key, "m", 1, bytes.Repeat([]byte("version one "), 20000))
	r.conn.mu.Lock()
	r.conn.waiting = desired(t, 1, v1)
	r.conn.mu.Unlock()
	r.conn.desired <- struct{}{}
	<-held
	count := func(stage string) uint64 {
		var m dto.Metric
		_ = h.WithLabelValues(stage).(prometheus.Metric).Write(&m)
		return m.Histogram.GetSampleCount()
	}
	testhelp.WaitFor(t, 5*time.Second, "the manifest verified while state notified is being written", func() bool {
		return count(StageManifest) == 1
	})
	unhold()
	testhelp.WaitFor(t, 10*time.Second, "m@1 active", func() bool { return count(StageActive) == 1 })
	cancel()
	<-done
	<-flushed
	b, err := r.rc.own.Get([]byte(keyModelPrefix + "m"))
	if err != nil || !bytes.Contains(b, []byte(`"state":"active"`)) {
		t.Fatalf("record on disk after Run: %s, %v; want state active", b, err)
	}
}

// TestFlushWaitsForFlushUnderWay: the flush before a revision is recorded as acted on does not
// return while another goroutine's flush (the agent's connected loop) has taken a dirty record
// but not yet written it: the record must be on disk before the revision.
func TestFlushWaitsForFlushUnderWay(t *testing.T) {
	r := newRig(t, config.Default().Fetch)
	r.rc.SetWriteBehind(true)
	r.rc.setState("m", wire.StateNotified, func(mr *modelRecord) { mr.Target = 7 })

	held, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	r.rc.recordHeld = func([]byte) {
		once.Do(func() { close(held); <-release })
	}
	first := make(chan struct{})
	go func() { r.rc.FlushRecords(); close(first) }()
	<-held // the agent's flush took m and is writing it

	second := make(chan []byte, 1)
	go func() {
		r.rc.flushRecords() // Run's, before saveRev
		b, _ := r.rc.own.Get([]byte(keyModelPrefix + "m"))
		second <- b
	}()
	select {
	case b := <-second:
		close(release)
		<-first
		t.Fatalf("flush returned while another flush was writing m; record on disk: %q", b)
	case <-time.After(300 * time.Millisecond):
	}
	close(release)
	<-first
	if b := <-second; !bytes.Contains(b, []byte(`"state":"notified"`)) {
		t.Fatalf("record on disk after the flush: %q; want state notified", b)
	}
}

// holdNotifiedWrite makes r's reconciler hold the first write of a record in state notified:
// held closes when that write is reached, and the write goes on once release is closed (every
// later write of that state waits for release too).
func holdNotifiedWrite(r *rig) (held, release chan struct{}) {
	held, release = make(chan struct{}), make(chan struct{})
	var once sync.Once
	r.rc.recordHeld = func(v []byte) {
		if bytes.Contains(v, []byte(`"state":"notified"`)) {
			once.Do(func() { close(held) })
			<-release
		}
	}
	return held, release
}
