package agent_test

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/driftline/driftline/agent"
	hubbroker "github.com/driftline/driftline/hub/broker"
	"github.com/driftline/driftline/shared/wire"
)

// mosquittoBinary finds Mosquitto. Without it the test skips loudly, unless
// DRIFTLINE_INTEGRATION=1 (make ci installs it), where that is a failure.
func mosquittoBinary(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("mosquitto"); err == nil {
		return p
	}
	for _, p := range []string{"/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	msg := "MOSQUITTO NOT INSTALLED: the agent's external-broker test did not run (make ci-deps installs it)"
	if os.Getenv("DRIFTLINE_INTEGRATION") == "1" {
		t.Fatal(msg)
	}
	t.Skip("!!! " + msg + " !!!")
	return ""
}

// mosquitto is a running Mosquitto with Driftline's password file and ACL.
type mosquitto struct {
	t                testing.TB
	cmd              *exec.Cmd
	port             int
	pwFile, aclFile  string
	hubUser, hubPass string
}

func startMosquitto(t *testing.T) *mosquitto {
	bin := mosquittoBinary(t)
	dir := t.TempDir()
	m := &mosquitto{t: t, port: freePort(t), pwFile: filepath.Join(dir, "passwd"), aclFile: filepath.Join(dir, "acl"),
		hubUser: "driftline-hub", hubPass: "hub-secret"}
	m.writeFiles(nil)
	conf := fmt.Sprintf("listener %d 127.0.0.1\nallow_anonymous false\npassword_file %s\nacl_file %s\npersistence false\nlog_dest stdout\n",
		m.port, m.pwFile, m.aclFile)
	if os.Geteuid() == 0 {
		conf += "user root\n" // as root Mosquitto would switch to user mosquitto, who cannot read t.TempDir()
	}
	confFile := filepath.Join(dir, "mosquitto.conf")
	if err := os.WriteFile(confFile, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	out := &syncBuffer{}
	m.cmd = exec.Command(bin, "-c", confFile)
	m.cmd.Stdout, m.cmd.Stderr = out, out
	if err := m.cmd.Start(); err != nil {
		t.Fatalf("start mosquitto: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- m.cmd.Wait() }()
	t.Cleanup(func() {
		_ = m.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			_ = m.cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("mosquitto output:\n%s", out.String())
		}
	})
	waitFor(t, 10*time.Second, "mosquitto accepting the hub user", func() bool {
		c := paho.NewClient(paho.NewClientOptions().AddBroker(m.url()).SetClientID("probe").
			SetUsername(m.hubUser).SetPassword(m.hubPass).SetConnectTimeout(time.Second))
		tok := c.Connect()
		if tok.WaitTimeout(2*time.Second) && tok.Error() == nil {
			c.Disconnect(0)
			return true
		}
		return false
	})
	return m
}

func (m *mosquitto) url() string { return fmt.Sprintf("tcp://127.0.0.1:%d", m.port) }

// writeFiles renders the password file and ACL for the hub user and devices (id -> token),
// with hub/broker's writers, and makes Mosquitto reload them.
func (m *mosquitto) writeFiles(devices map[string]string) {
	creds := []hubbroker.Cred{{User: m.hubUser, Password: m.hubPass}}
	var ids []string
	for id, tok := range devices {
		creds = append(creds, hubbroker.Cred{User: id, Password: tok})
		ids = append(ids, id)
	}
	var pw, acl bytes.Buffer
	if err := hubbroker.WriteMosquittoPasswd(&pw, creds); err != nil {
		m.t.Fatal(err)
	}
	if err := hubbroker.WriteMosquittoACL(&acl, wire.DefaultPrefix, ids, nil, m.hubUser); err != nil {
		m.t.Fatal(err)
	}
	for f, b := range map[string][]byte{m.pwFile: pw.Bytes(), m.aclFile: acl.Bytes()} {
		if err := os.WriteFile(f, b, 0o600); err != nil {
			m.t.Fatal(err)
		}
	}
	if m.cmd != nil {
		_ = m.cmd.Process.Signal(syscall.SIGHUP)
	}
}

// TestEndToEndMosquitto is TestEndToEnd's pull and delta over a real Mosquitto with the ACL the
// hub's docs ship: the hub connects as its admin user, the agent as its device.
func TestEndToEndMosquitto(t *testing.T) {
	m := startMosquitto(t)
	h := startHub(t, fmt.Sprintf("tcp://%s:%s@127.0.0.1:%d", m.hubUser, m.hubPass, m.port))
	tok := h.enroll("dev-mq")
	m.writeFiles(map[string]string{"dev-mq": tok})
	time.Sleep(200 * time.Millisecond) // SIGHUP is asynchronous; the agent retries anyway

	v1data := randomBytes(11, 8<<20)
	v1, d1 := h.pushModel("mq", v1data)
	cfg := agentConfig(t, "dev-mq", tok, []string{m.url()}, h.keys())
	a := startAgent(t, cfg, agent.Options{})
	waitFor(t, 20*time.Second, "agent connected to mosquitto", a.Connected)
	waitFor(t, 20*time.Second, "hub sees the device online", func() bool { on, _ := h.device("dev-mq"); return on })
	h.assign("dev-mq", "mq", v1)
	waitActive(t, h, "dev-mq", "mq", v1, "active")
	if got := fileDigest(t, modelFile(cfg.ModelDir, "mq")); got != d1 {
		t.Fatalf("current %s, want %s", got, d1)
	}
	fetched1 := metric(t, a.reg, agent.MetricFetchedBytes)
	v2data := mutate(v1data, 0.05, 1)
	v2, d2 := h.pushModel("mq", v2data)
	h.assign("dev-mq", "mq", v2)
	waitActive(t, h, "dev-mq", "mq", v2, "active")
	if got := fileDigest(t, modelFile(cfg.ModelDir, "mq")); got != d2 {
		t.Fatalf("current %s, want %s", got, d2)
	}
	delta := metric(t, a.reg, agent.MetricFetchedBytes) - fetched1
	t.Logf("over mosquitto: v1 moved %.0f bytes, v2 moved %.0f (%.1f%%)", fetched1, delta, 100*delta/float64(len(v2data)))
	if delta > 0.10*float64(len(v2data)) {
		t.Fatalf("v2 moved %.0f bytes, more than 10%%", delta)
	}
	if n := metric(t, a.reg, agent.MetricRejected, "reason", agent.ReasonForeignMessage); n != 0 {
		t.Fatalf("%v foreign messages", n)
	}
}
