package agent_test

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/driftline/driftline/agent"
	"github.com/driftline/driftline/agent/agenttest"
	"github.com/driftline/driftline/agent/config"
	hubbroker "github.com/driftline/driftline/hub/broker"
	"github.com/driftline/driftline/hub/broker/mosquittotest"
	"github.com/driftline/driftline/hub/node/nodetest"
	"github.com/driftline/driftline/internal/testhelp"
	"github.com/driftline/driftline/shared/wire"
)

// mosquitto is a running Mosquitto with Driftline's password file and ACL.
type mosquitto struct {
	t                testing.TB
	b                *mosquittotest.Broker
	hubUser, hubPass string
	// models lists the models whose shared chunk topic each device may read (the rendered ACL).
	models map[string][]string
}

func startMosquitto(t *testing.T) *mosquitto {
	m := &mosquitto{t: t, hubUser: "driftline-hub", hubPass: "hub-secret"}
	m.b = mosquittotest.Start(t, "the agent's external-broker test", m.files(nil), m.hubUser, m.hubPass)
	return m
}

func (m *mosquitto) url() string { return m.b.URL() }

// writeFiles renders the password file and ACL for the hub user and devices (id -> token),
// with hub/broker's writers, and makes Mosquitto reload them.
func (m *mosquitto) writeFiles(devices map[string]string) { m.b.Reload(m.files(devices)) }

func (m *mosquitto) files(devices map[string]string) mosquittotest.Files {
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
	if err := hubbroker.WriteMosquittoACLModels(&acl, wire.DefaultPrefix, ids, m.models, nil, m.hubUser); err != nil {
		m.t.Fatal(err)
	}
	return mosquittotest.Files{Passwd: pw.Bytes(), ACL: acl.Bytes()}
}

// TestEndToEndMosquitto is TestEndToEnd's pull and delta over a real Mosquitto with the ACL the
// hub's docs ship: the hub connects as its admin user, the agent as its device.
func TestEndToEndMosquitto(t *testing.T) {
	m := startMosquitto(t)
	h := nodetest.Start(t, nodetest.Brokers(strings.Replace(m.url(), "tcp://", "tcp://"+m.hubUser+":"+m.hubPass+"@", 1)))
	tok := enroll(h, "dev-mq")
	m.writeFiles(map[string]string{"dev-mq": tok})
	m.b.WaitAccepts("dev-mq", tok) // Mosquitto applies a reload asynchronously

	v1data := agenttest.RandomBytes(11, 8<<20)
	v1, d1 := h.PushModel("mq", v1data, "", true)
	cfg := agenttest.Config(t, "dev-mq", tok, []string{m.url()}, h.Keys())
	a := agenttest.Start(t, cfg, agent.Options{})
	testhelp.WaitFor(t, 20*time.Second, "agent connected to mosquitto", a.Connected)
	testhelp.WaitFor(t, 20*time.Second, "hub sees the device online", func() bool { on, _ := device(h, "dev-mq"); return on })
	assign(h, "dev-mq", "mq", v1)
	waitActive(t, h, "dev-mq", "mq", v1, "active")
	if got := agenttest.FileDigest(t, agenttest.ModelFile(cfg.ModelDir, "mq")); got != d1 {
		t.Fatalf("current %s, want %s", got, d1)
	}
	fetched1 := agenttest.Metric(t, a.Reg, agent.MetricFetchedBytes)
	v2data := agenttest.Mutate(v1data, 0.05, 1)
	v2, d2 := h.PushModel("mq", v2data, "", true)
	assign(h, "dev-mq", "mq", v2)
	waitActive(t, h, "dev-mq", "mq", v2, "active")
	if got := agenttest.FileDigest(t, agenttest.ModelFile(cfg.ModelDir, "mq")); got != d2 {
		t.Fatalf("current %s, want %s", got, d2)
	}
	delta := agenttest.Metric(t, a.Reg, agent.MetricFetchedBytes) - fetched1
	t.Logf("over mosquitto: v1 moved %.0f bytes, v2 moved %.0f (%.1f%%)", fetched1, delta, 100*delta/float64(len(v2data)))
	if delta > 0.10*float64(len(v2data)) {
		t.Fatalf("v2 moved %.0f bytes, more than 10%%", delta)
	}
	if n := agenttest.Metric(t, a.Reg, agent.MetricRejected, "reason", agent.ReasonForeignMessage); n != 0 {
		t.Fatalf("%v foreign messages", n)
	}
}

// TestSharedChunksMosquitto: with the ACL `driftline broker acl` renders (each device may read
// the shared chunk topic of the models its desired state names), two devices pull one model
// through a real Mosquitto from the hub's shared publishes, none from their own topics; a
// device the file does not grant the model still completes, on its own topic.
func TestSharedChunksMosquitto(t *testing.T) {
	m := startMosquitto(t)
	h := nodetest.Start(t, nodetest.Brokers(strings.Replace(m.url(), "tcp://", "tcp://"+m.hubUser+":"+m.hubPass+"@", 1)))
	toks := map[string]string{}
	for _, id := range []string{"mqf-1", "mqf-2", "mqf-3"} {
		toks[id] = enroll(h, id)
	}
	m.models = map[string][]string{"mqf-1": {"mqf"}, "mqf-2": {"mqf"}} // not mqf-3
	m.writeFiles(toks)
	for id, tok := range toks {
		m.b.WaitAccepts(id, tok)
	}
	data := agenttest.RandomBytes(21, 2<<20)
	v, digest := h.PushModel("mqf", data, "", true)
	var cfgs []config.Config
	for _, id := range []string{"mqf-1", "mqf-2"} {
		cfg := agenttest.Config(t, id, toks[id], []string{m.url()}, h.Keys())
		cfg.Fetch.Timeout = config.Duration(10 * time.Second)
		a := agenttest.Start(t, cfg, agent.Options{})
		testhelp.WaitFor(t, 20*time.Second, id+" connected", a.Connected)
		testhelp.WaitFor(t, 20*time.Second, id+" online", func() bool { on, _ := device(h, id); return on })
		cfgs = append(cfgs, cfg)
	}
	for _, cfg := range cfgs {
		assign(h, cfg.DeviceID, "mqf", v)
	}
	for _, cfg := range cfgs {
		waitActive(t, h, cfg.DeviceID, "mqf", v, "active")
		if got := agenttest.FileDigest(t, agenttest.ModelFile(cfg.ModelDir, "mqf")); got != digest {
			t.Fatalf("%s: current %s, want %s", cfg.DeviceID, got, digest)
		}
	}
	shared, perDevice := egress(h)
	t.Logf("over mosquitto, 2 devices: shared %.0f bytes, per device %.0f", shared, perDevice)
	if shared == 0 || perDevice != 0 {
		t.Fatalf("shared %.0f, per device %.0f bytes: want every chunk on the shared topic", shared, perDevice)
	}

	// mqf-3 is not granted the topic: Mosquitto acknowledges the subscription but delivers
	// nothing; the agent's request times out once and it completes on its own topic.
	cfg := agenttest.Config(t, "mqf-3", toks["mqf-3"], []string{m.url()}, h.Keys())
	a := agenttest.Start(t, cfg, agent.Options{})
	testhelp.WaitFor(t, 20*time.Second, "mqf-3 connected", a.Connected)
	testhelp.WaitFor(t, 20*time.Second, "mqf-3 online", func() bool { on, _ := device(h, "mqf-3"); return on })
	assign(h, "mqf-3", "mqf", v)
	waitActive(t, h, "mqf-3", "mqf", v, "active")
	if got := agenttest.FileDigest(t, agenttest.ModelFile(cfg.ModelDir, "mqf")); got != digest {
		t.Fatalf("mqf-3: current %s, want %s", got, digest)
	}
	if _, perDevice2 := egress(h); perDevice2 == 0 {
		t.Fatal("mqf-3 completed without its own topic: the ACL let it read the shared one")
	}
}
