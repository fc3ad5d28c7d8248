package protocol

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/driftline/driftline/hub/command"
	"github.com/driftline/driftline/hub/state"
	"github.com/driftline/driftline/hub/state/statetest"
	"github.com/driftline/driftline/shared/artifact"
	"github.com/driftline/driftline/shared/wire"
)

// scopeFixture is a state with dataset ds@1 (a contract and a reference profile), model m@1
// trained on it, and device d1 told to run m@1.
type scopeFixture struct {
	st                *statetest.Store
	contract, profile []byte
	contractDigest    string
	profileDigest     string
	manifestDigest    string
	again             state.ModelVersionCreate // m's version again: the same artifact and manifest
}

func newScopeFixture(t testing.TB) scopeFixture {
	t.Helper()
	f := scopeFixture{st: statetest.New(t), contract: []byte(`{"columns":[{"name":"x","type":"float"}]}`),
		profile: []byte("a reference profile")}
	f.contractDigest, f.profileDigest = artifact.DigestOf(f.contract), artifact.DigestOf(f.profile)
	man, manifest, refs := oneChunkModel(t)
	f.manifestDigest = artifact.DigestOf(manifest)
	st := f.st
	st.Must(t, command.TypeDatasetCreate, state.DatasetCreate{Name: "ds"})
	st.Must(t, command.TypeDatasetVersionCreate, f.datasetVersion())
	st.Must(t, command.TypeModelCreate, state.ModelCreate{Name: "m"})
	st.Must(t, command.TypeChunksPut, state.ChunksPut{Chunks: []state.Chunk{{Digest: refs[0].Digest, Size: refs[0].Size, Zstd: []byte{1}}}})
	f.again = state.ModelVersionCreate{Model: "m", Digest: man.Digest, Size: man.Size,
		Chunks: refs, Manifest: manifest, ManifestDigest: f.manifestDigest, TrainedOn: []state.VersionRef{{Dataset: "ds", Version: 1}}}
	st.Must(t, command.TypeModelVersionCreate, f.again)
	st.Must(t, command.TypeModelVersionApprove, state.ModelVersionApprove{Model: "m", Version: 1,
		Signature: state.Signature{KeyID: "k", Sig: "s"}})
	st.Must(t, command.TypeDeviceCreate, state.DeviceCreate{ID: "d1", TokenHash: "h-d1"})
	st.Must(t, command.TypeDeviceDesiredSet, state.DeviceDesiredSet{ID: "d1", Model: "m", Version: 1})
	return f
}

// datasetVersion is the next version of ds with the fixture's contract and profile.
func (f scopeFixture) datasetVersion() state.DatasetVersionCreate {
	return state.DatasetVersionCreate{Dataset: "ds", Contract: f.contract, ContractHash: f.contractDigest,
		Profile: f.profile, ProfileDigest: f.profileDigest, SampleSHA256: artifact.DigestOf([]byte("rows")), SampleRows: 1}
}

func (f scopeFixture) service(catchUp func(context.Context) error) *Service {
	cfg := Config{Transport: &recorder{}, Reader: f.st.Reader(), Topics: wire.Default(), CatchUp: catchUp}
	return &Service{cfg: cfg, log: slog.New(slog.NewTextHandler(io.Discard, nil)), m: newMetrics(prometheus.NewRegistry())}
}

// fetchOne serves one request of d1 for digest and returns the frame answered, nil for none.
func fetchOne(t *testing.T, s *Service, id, digest string) *wire.Frame {
	t.Helper()
	s.serve(fetchJob{device: "d1", req: wire.FetchRequest{Header: wire.Header{DeviceID: "d1"}, RequestID: id,
		Digests: []string{digest}}}, &frameBufs{})
	b := s.cfg.Transport.(*recorder).last(wire.Default().Chunk("d1"))
	if b == nil {
		return nil
	}
	fr, err := wire.DecodeFrame(b)
	if err != nil {
		t.Fatal(err)
	}
	if fr.RequestID != id {
		return nil
	}
	return &fr
}

// TestFetchContractSharedWithLaterDatasetVersion: a later version of a dataset with the same
// contract (or profile) bytes, as every candidate the sample collector makes (it keeps its
// parent's contract) or a `dataset push` with an unchanged contract, must not take the
// contract out of the scope (nor a model pushed again its manifest) of devices whose model was trained on the earlier version. Found
// by `make bench-fleet` at 10,000 agents: from the first candidate on (wave 3), every agent
// that fetched the contract got not found ("hub has no such digest"), final for its revision:
// the object index holds one reference per digest, the latest version's.
func TestFetchContractSharedWithLaterDatasetVersion(t *testing.T) {
	f := newScopeFixture(t)
	s := f.service(func(context.Context) error { return nil })
	for _, d := range []string{f.contractDigest, f.profileDigest, f.manifestDigest} {
		if fr := fetchOne(t, s, "before", d); fr == nil || fr.Kind != wire.FrameData {
			t.Fatalf("%s before a later dataset version: answered %v; want the data", d, fr)
		}
	}
	f.st.Must(t, command.TypeDatasetVersionCreate, f.datasetVersion()) // ds@2, same contract and profile
	f.st.Must(t, command.TypeModelVersionCreate, f.again)              // m@2, the same artifact pushed again
	for _, d := range []string{f.contractDigest, f.profileDigest, f.manifestDigest} {
		if fr := fetchOne(t, s, "after", d); fr == nil || fr.Kind != wire.FrameData {
			kind := "nothing"
			if fr != nil {
				kind = map[wire.FrameKind]string{wire.FrameData: "data", wire.FrameNotFound: "not found"}[fr.Kind]
			}
			t.Fatalf("%s after ds@2 and m@2 with the same bytes: answered %s; want the data (d1 runs m@1, trained on ds@1)", d, kind)
		}
	}
	if n := testutil.ToFloat64(s.m.fetches.WithLabelValues("out_of_scope")); n != 0 {
		t.Fatalf("%v requests counted out_of_scope; want 0", n)
	}
	// A device whose model was trained on neither version still gets not found.
	f.st.Must(t, command.TypeDeviceDesiredSet, state.DeviceDesiredSet{ID: "d1", Model: "m", Version: 0})
	if fr := fetchOne(t, s, "unscoped", f.contractDigest); fr == nil || fr.Kind != wire.FrameNotFound {
		t.Fatalf("a device without the model: answered %v; want not found", fr)
	}
}

// TestFetchNotFoundOnlyAfterCatchUp: a node that could not catch up with the cluster (the
// barrier or read index failed or timed out, as under load) cannot tell whether a digest
// outside the device's scope as it knows it is really not there; not found is final for the
// agent's revision, so it answers nothing and the agent asks again (its request deadline).
func TestFetchNotFoundOnlyAfterCatchUp(t *testing.T) {
	f := newScopeFixture(t)
	f.st.Must(t, command.TypeDeviceDesiredSet, state.DeviceDesiredSet{ID: "d1", Model: "m", Version: 0})
	s := f.service(func(context.Context) error { return errors.New("barrier: timed out") })
	if fr := fetchOne(t, s, "no-catch-up", f.contractDigest); fr != nil {
		t.Fatalf("a node that could not catch up answered frame kind %v; want no answer (the agent retries)", fr.Kind)
	}
	if n := testutil.ToFloat64(s.m.fetches.WithLabelValues("catch_up_failed")); n != 1 {
		t.Fatalf("%v requests counted catch_up_failed; want 1", n)
	}
	s = f.service(func(context.Context) error { return nil })
	if fr := fetchOne(t, s, "caught-up", f.contractDigest); fr == nil || fr.Kind != wire.FrameNotFound {
		t.Fatalf("a node that caught up: answered %v; want not found", fr)
	}
}
