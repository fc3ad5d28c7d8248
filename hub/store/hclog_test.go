package store

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
)

func TestRaftLogsReachSlog(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	h := newRaftLogger(log)
	cases := []struct {
		emit func()
		want string
	}{
		{func() { h.Info("entering follower state", "leader-id", "n1") }, `level=INFO msg="entering follower state" module=raft leader-id=n1`},
		{func() { h.Warn("heartbeat timeout reached") }, `level=WARN msg="heartbeat timeout reached" module=raft`},
		{func() { h.Error("failed to appendEntries", "error", "eof") }, `level=ERROR msg="failed to appendEntries" module=raft error=eof`},
		{func() { h.Debug("debug line") }, `level=DEBUG msg="debug line" module=raft`},
	}
	for _, c := range cases {
		buf.Reset()
		c.emit()
		if !strings.Contains(buf.String(), c.want) {
			t.Errorf("got %q, want it to contain %q", buf.String(), c.want)
		}
	}
	buf.Reset()
	if _, err := (slogWriter{log: log}).Write([]byte("not json\n")); err != nil || !strings.Contains(buf.String(), `msg="not json"`) {
		t.Errorf("plain line: %q, %v", buf.String(), err)
	}
}
