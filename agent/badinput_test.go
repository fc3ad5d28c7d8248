package agent_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/driftline/driftline/agent"
	"github.com/driftline/driftline/agent/agenttest"
	"github.com/driftline/driftline/agent/config"
	"github.com/driftline/driftline/internal/testhelp"
	"github.com/driftline/driftline/shared/artifact"
	"github.com/driftline/driftline/shared/contract/rows"
	"github.com/driftline/driftline/shared/outputs"
	"github.com/driftline/driftline/shared/wire"
	"github.com/driftline/driftline/shared/zstdx"
)

// TestBadInput feeds the agent each kind of bad input a broker or a compromised hub could send.
// Each is refused, counted under its reason and, where a model was asked for, reported failed
// with the reason; the agent stays up and activates a good version at the end.
func TestBadInput(t *testing.T) {
	b := startBroker(t, 0)
	h := newFakeHub(t, b, "dev-bad")
	latest := h.watchReported()
	cfg := agenttest.Config(t, "dev-bad", "any", []string{b.url()}, []string{h.publicKey()})
	cfg.Fetch.Timeout = config.Duration(500 * time.Millisecond)
	cfg.Fetch.Attempts = 3
	a := agenttest.Start(t, cfg, agent.Options{})
	testhelp.WaitFor(t, 10*time.Second, "connected", a.Connected)

	good := h.addModel(agenttest.RandomBytes(1, 600<<10))
	other := h.addModel(agenttest.RandomBytes(2, 100<<10))
	_, strangerKey, _ := ed25519.GenerateKey(rand.Reader)

	rejected := func(reason string) float64 { return agenttest.Metric(t, a.Reg, agent.MetricRejected, "reason", reason) }
	// failedWith waits for model name to be reported failed with an error holding msg.
	failedWith := func(t *testing.T, name, msg string) {
		t.Helper()
		testhelp.WaitFor(t, 10*time.Second, name+" failed with "+msg, func() bool {
			m, ok := latest().Models[name]
			return ok && m.State == wire.StateFailed && strings.Contains(m.LastError, msg)
		})
	}
	frame := func(reqID string, digest [32]byte, plain []byte) []byte {
		f, err := wire.EncodeFrame(wire.Frame{Kind: wire.FrameData, RequestID: reqID, Digest: digest,
			Total: uint32(len(plain)), Plain: uint32(len(plain)), Payload: zstdx.Encode(nil, plain)})
		if err != nil {
			t.Fatal(err)
		}
		return f
	}

	cases := []struct {
		name   string
		reason string
		run    func(t *testing.T)
	}{
		{"malformed desired", agent.ReasonMalformedDesired, func(t *testing.T) {
			h.publish(h.topics.Desired(h.id), []byte("{not json"), true)
		}},
		{"desired for another device", agent.ReasonMalformedDesired, func(t *testing.T) {
			p, _ := wire.Encode(wire.Desired{Header: wire.Header{DeviceID: "someone-else", TS: 1}, Rev: 99})
			h.publish(h.topics.Desired(h.id), p, true)
		}},
		{"unknown model", agent.ReasonUnknownModel, func(t *testing.T) {
			e := h.entry("ghost", 1, good)
			e.ManifestDigest = artifact.DigestOf([]byte("no such manifest"))
			h.desire(h.approve(e))
			failedWith(t, "ghost", "no such digest")
		}},
		{"model name unusable on disk", agent.ReasonUnknownModel, func(t *testing.T) {
			h.desire(h.entry(".hidden", 1, good))
			failedWith(t, ".hidden", "bad model name")
		}},
		{"unsigned manifest", agent.ReasonUnsigned, func(t *testing.T) {
			e := h.entry("m-unsigned", 1, good)
			e.ApprovalSignature = artifact.Signature{}
			h.desire(e)
			failedWith(t, "m-unsigned", "not signed")
		}},
		{"unknown key", agent.ReasonUnknownKey, func(t *testing.T) {
			e := h.entry("m-stranger", 1, good)
			e.ApprovalSignature = artifact.SignApproval(strangerKey, e.Approval())
			h.desire(e)
			failedWith(t, "m-stranger", "untrusted key")
		}},
		{"bad signature", agent.ReasonBadSignature, func(t *testing.T) {
			e := h.entry("m-badsig", 1, good)
			e.ApprovalSignature = h.entry("m-badsig", 1, other).ApprovalSignature // trusted key, another artifact
			h.desire(e)
			failedWith(t, "m-badsig", "signature")
		}},
		{"contract digest swapped after approval", agent.ReasonBadSignature, func(t *testing.T) {
			// The desired state itself is validly signed: only the approval binds the contract.
			e := h.entry("m-swapped", 1, good)
			e.ContractDigest, e.Dataset, e.DatasetVersion = h.addObject([]byte(`{"fields":[]}`)), "sensors", 1
			h.desire(e)
			failedWith(t, "m-swapped", "signature")
		}},
		{"output reference swapped after approval", agent.ReasonBadSignature, func(t *testing.T) {
			// An approval made for the version without an output reference (valid, by a
			// trusted key) under a desired state that names a forged output reference: the
			// approval must bind output_digest, or the forged contract would be used.
			e := h.entry("m-outputs", 1, good)
			e.OutputDigest = h.addObject(forgedOutputReference(t))
			h.desire(e)
			failedWith(t, "m-outputs", "signature")
		}},
		{"unsigned desired (forged)", agent.ReasonUnsigned, func(t *testing.T) {
			p, _ := wire.Encode(wire.Desired{Header: wire.Header{DeviceID: h.id, TS: 1}, Rev: 9007199254740991, Models: []wire.DesiredModel{}})
			h.publish(h.topics.Desired(h.id), p, true)
		}},
		{"desired signed by a stranger", agent.ReasonUnknownKey, func(t *testing.T) {
			d := wire.Desired{Header: wire.Header{DeviceID: h.id, TS: 1}, Rev: 9007199254740991, Models: []wire.DesiredModel{},
				IssuedAt: time.Now().UnixMilli(), Expires: time.Now().Add(time.Hour).UnixMilli()}
			d.Sign(strangerKey)
			p, _ := wire.Encode(d)
			h.publish(h.topics.Desired(h.id), p, true)
		}},
		{"desired with a tampered rev", agent.ReasonBadSignature, func(t *testing.T) {
			var d wire.Desired
			json.Unmarshal(h.signedDesired(h.rev.Load()+1, time.Hour), &d)
			d.Rev = 9007199254740991
			p, _ := wire.Encode(d)
			h.publish(h.topics.Desired(h.id), p, true)
		}},
		{"expired desired", agent.ReasonExpired, func(t *testing.T) {
			h.publish(h.topics.Desired(h.id), h.signedDesired(h.rev.Load()+1, -time.Second), true)
		}},
		{"manifest with a wrong digest", agent.ReasonManifestDigest, func(t *testing.T) {
			h.mu.Lock()
			h.tamper = func(reqID, d string) ([][]byte, bool) {
				if d != good.manifestDigest {
					return nil, false
				}
				sum, _ := artifact.ParseDigest(d)
				return [][]byte{frame(reqID, sum, other.manifestBytes)}, true // other bytes under good's name
			}
			h.mu.Unlock()
			defer func() { h.mu.Lock(); h.tamper = nil; h.mu.Unlock() }()
			h.desire(h.entry("m-forged", 1, good))
			failedWith(t, "m-forged", "too many attempts")
		}},
		{"chunk whose bytes do not match its digest, then the real one", agent.ReasonChunkDigest, func(t *testing.T) {
			first := good.manifest.Chunks[0].Digest
			forged := 0
			h.mu.Lock()
			h.tamper = func(reqID, d string) ([][]byte, bool) {
				if d != first || forged >= 2 {
					return nil, false
				}
				forged++
				sum, _ := artifact.ParseDigest(d)
				return [][]byte{frame(reqID, sum, []byte("forged chunk"))}, true
			}
			h.mu.Unlock()
			defer func() { h.mu.Lock(); h.tamper = nil; h.mu.Unlock() }()
			h.desire(h.entry("m-good", 1, good))
			testhelp.WaitFor(t, 20*time.Second, "m-good active", func() bool {
				m := latest().Models["m-good"]
				return m.State == wire.StateActive && m.Active != nil && *m.Active == 1
			})
		}},
		{"replay of an older signed desired", agent.ReasonReplayed, func(t *testing.T) {
			h.publish(h.topics.Desired(h.id), h.signedDesired(1, time.Hour), true)
		}},
		{"oversized frame", agent.ReasonOversizedFrame, func(t *testing.T) {
			h.publish(h.topics.Chunk(h.id), make([]byte, wire.MaxFrameSize+1), false)
		}},
		{"garbage frame", agent.ReasonBadFrame, func(t *testing.T) {
			h.publish(h.topics.Chunk(h.id), []byte("DLCF garbage"), false)
		}},
		{"frame for an unknown request id", agent.ReasonUnknownRequest, func(t *testing.T) {
			h.publish(h.topics.Chunk(h.id), frame("never-sent-1", sha256.Sum256([]byte("x")), []byte("x")), false)
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := rejected(tc.reason)
			tc.run(t)
			testhelp.WaitFor(t, 10*time.Second, "rejection counted under "+tc.reason, func() bool { return rejected(tc.reason) > before })
			if !a.Connected() {
				t.Fatal("agent disconnected")
			}
		})
	}
	// Still alive and acting: a good desired state (m-good only) activates and the rest is
	// dropped from the report.
	h.desire(h.entry("m-good", 1, good))
	testhelp.WaitFor(t, 10*time.Second, "final state", func() bool {
		r := latest()
		m, ok := r.Models["m-good"]
		return ok && m.State == wire.StateActive && len(r.Models) == 1
	})
	if got := agenttest.FileDigest(t, agenttest.ModelFile(cfg.ModelDir, "m-good")); got != good.manifest.Digest {
		t.Fatalf("current %s, want %s", got, good.manifest.Digest)
	}
}

// forgedOutputReference is a well-formed output reference (shared/outputs) nobody approved.
func forgedOutputReference(t *testing.T) []byte {
	t.Helper()
	c, err := outputs.ParseContract([]byte(`{"primaryKey":["id"],"fields":[{"name":"id","type":"string"},
 {"name":"pred","type":"string","x-driftline":{"role":"prediction"}},{"name":"label","type":"string","x-driftline":{"role":"label"}}]}`))
	if err != nil {
		t.Fatal(err)
	}
	ref, err := outputs.Build(c, []byte("id,pred,label\na,x,x\nb,y,x\n"), rows.FormatCSV)
	if err != nil {
		t.Fatal(err)
	}
	b, err := ref.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return b
}
