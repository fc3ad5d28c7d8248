package state

import (
	"testing"

	"github.com/driftline/driftline/hub/command"
	"github.com/driftline/driftline/shared/artifact"
)

// TestHoldsObjectByDigest: the object index names one version per digest, the last registered
// with those bytes; a device whose scope holds an earlier version with the same bytes (a
// contract a candidate kept, an output reference or manifest pushed again) may still read it,
// and a device without any such version may not.
func TestHoldsObjectByDigest(t *testing.T) {
	h := newHarness(t)
	r := Reader{DB: h.db}
	contract := []byte(`{"columns":[]}`)
	ds := DatasetVersionCreate{Dataset: "temps", Contract: contract, ContractHash: artifact.DigestOf(contract), SampleSHA256: "x"}
	h.must(command.TypeDatasetCreate, "alice", DatasetCreate{Name: "temps"})
	h.must(command.TypeDatasetVersionCreate, "alice", ds)
	h.must(command.TypeModelCreate, "alice", ModelCreate{Name: "m"})
	h.must(command.TypeChunksPut, "alice", ChunksPut{Chunks: []Chunk{{Digest: digestA, Size: 10, Zstd: []byte{1}}}})
	manifest := []byte("manifest")
	out := []byte("output reference")
	for range 2 {
		res := h.must(command.TypeModelVersionCreate, "alice", ModelVersionCreate{
			Model: "m", Digest: digestA, Size: 10, Chunks: []ChunkRef{{Digest: digestA, Size: 10}},
			Manifest: manifest, ManifestDigest: artifact.DigestOf(manifest),
			TrainedOn: []VersionRef{{Dataset: "temps", Version: 1}},
		}).(ModelVersion)
		h.must(command.TypeModelVersionOutputSet, "alice", ModelVersionOutputSet{Model: "m", Version: res.Version,
			Reference: out, Summary: OutputSummary{Digest: artifact.DigestOf(out)}})
		h.must(command.TypeModelVersionApprove, "alice", ModelVersionApprove{Model: "m", Version: res.Version,
			Signature: Signature{KeyID: "k", Sig: "s"}})
	}
	h.must(command.TypeDatasetVersionCreate, "alice", ds) // temps@2, the same contract
	h.must(command.TypeDeviceCreate, "alice", DeviceCreate{ID: "d1", TokenHash: "h1"})
	h.must(command.TypeDeviceCreate, "alice", DeviceCreate{ID: "d2", TokenHash: "h2"})
	h.must(command.TypeDeviceDesiredSet, "alice", DeviceDesiredSet{ID: "d1", Model: "m", Version: 1})
	for _, c := range []struct {
		digest string
		kind   string
		at     int // the version the index names
	}{
		{ds.ContractHash, ObjectContract, 2},
		{artifact.DigestOf(manifest), ObjectManifest, 2},
		{artifact.DigestOf(out), ObjectOutput, 2},
	} {
		_, ref, err := r.Object(c.digest)
		if err != nil {
			t.Fatal(err)
		}
		if ref.Kind != c.kind || ref.Version != c.at {
			t.Fatalf("%s: index names %+v; the test expects %s@%d", c.digest, ref, c.kind, c.at)
		}
		for dev, want := range map[string]bool{"d1": true, "d2": false} {
			sc, err := r.DeviceScope(dev)
			if err != nil {
				t.Fatal(err)
			}
			got, err := r.HoldsObject(sc, c.digest, ref)
			if err != nil || got != want {
				t.Fatalf("%s %s: HoldsObject = %v, %v; want %v", dev, c.kind, got, err, want)
			}
		}
	}
}
