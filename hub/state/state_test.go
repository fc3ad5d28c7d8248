package state

import (
	"errors"
	"fmt"
	"testing"

	"github.com/dgraph-io/badger/v4"

	"github.com/driftline/driftline/hub/command"
	"github.com/driftline/driftline/shared/artifact"
	"github.com/driftline/driftline/shared/kv"
)

// harness applies commands one per transaction, the way the store's FSM would.
type harness struct {
	t     *testing.T
	db    *badger.DB
	index uint64
	now   int64
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	db, err := kv.Open("", kv.Test)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return &harness{t: t, db: db, now: 1_700_000_000_000}
}

func (h *harness) apply(typ command.Type, actor string, body any) (any, error) {
	h.t.Helper()
	h.index++
	h.now += 1000
	env, err := command.New(typ, "", h.now, actor, body)
	if err != nil {
		h.t.Fatal(err)
	}
	var res any
	var aerr error
	err = h.db.Update(func(txn *badger.Txn) error {
		res, aerr = Processor{}.Apply(txn, h.index, env)
		return nil
	})
	if err != nil {
		h.t.Fatal(err)
	}
	return res, aerr
}

func (h *harness) must(typ command.Type, actor string, body any) any {
	h.t.Helper()
	res, err := h.apply(typ, actor, body)
	if err != nil {
		h.t.Fatalf("apply %d: %v", typ, err)
	}
	return res
}

const digestA = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"

func seedRegistry(h *harness) {
	h.must(command.TypeDatasetCreate, "alice", DatasetCreate{Name: "temps"})
	h.must(command.TypeDatasetVersionCreate, "alice", DatasetVersionCreate{Dataset: "temps", SampleSHA256: "x"})
	h.must(command.TypeModelCreate, "alice", ModelCreate{Name: "m"})
	h.must(command.TypeChunksPut, "alice", ChunksPut{Chunks: []Chunk{{Digest: digestA, Size: 10, Zstd: []byte{1}}}})
	h.must(command.TypeModelVersionCreate, "alice", ModelVersionCreate{
		Model: "m", Digest: digestA, Size: 10, Chunks: []ChunkRef{{Digest: digestA, Size: 10}},
		TrainedOn: []VersionRef{{Dataset: "temps", Version: 1}},
	})
}

func TestRegistryCommands(t *testing.T) {
	h := newHarness(t)
	seedRegistry(h)
	sig := Signature{KeyID: "k", Sig: "s"}
	cases := []struct {
		name  string
		typ   command.Type
		actor string
		body  any
		want  error
	}{
		{"duplicate dataset", command.TypeDatasetCreate, "a", DatasetCreate{Name: "temps"}, ErrExists},
		{"bad dataset name", command.TypeDatasetCreate, "a", DatasetCreate{Name: "a/b"}, ErrInvalid},
		{"version of missing dataset", command.TypeDatasetVersionCreate, "a", DatasetVersionCreate{Dataset: "nope"}, ErrNotFound},
		{"missing parent", command.TypeDatasetVersionCreate, "a", DatasetVersionCreate{Dataset: "temps", Parents: []VersionRef{{Version: 9}}}, ErrInvalid},
		{"trained_on missing", command.TypeModelVersionCreate, "a", ModelVersionCreate{Model: "m", Digest: digestA, Size: 10,
			Chunks: []ChunkRef{{Digest: digestA, Size: 10}}, TrainedOn: []VersionRef{{Dataset: "temps", Version: 7}}}, ErrInvalid},
		{"chunk not stored", command.TypeModelVersionCreate, "a", ModelVersionCreate{Model: "m", Digest: digestA, Size: 10,
			Chunks: []ChunkRef{{Digest: "sha256:" + string(make([]byte, 0)) + "bb", Size: 10}}}, ErrInvalid},
		{"sizes disagree", command.TypeModelVersionCreate, "a", ModelVersionCreate{Model: "m", Digest: digestA, Size: 11,
			Chunks: []ChunkRef{{Digest: digestA, Size: 10}}}, ErrInvalid},
		{"four eyes", command.TypeModelVersionApprove, "alice", ModelVersionApprove{Model: "m", Version: 1, Signature: sig, FourEyes: true}, ErrConflict},
		{"unsigned approval", command.TypeModelVersionApprove, "bob", ModelVersionApprove{Model: "m", Version: 1}, ErrInvalid},
		{"approve missing version", command.TypeModelVersionApprove, "bob", ModelVersionApprove{Model: "m", Version: 5, Signature: sig}, ErrNotFound},
		{"desired unapproved", command.TypeDeviceDesiredSet, "a", DeviceDesiredSet{ID: "d1", Model: "m", Version: 1}, ErrNotFound},
		{"alias to missing", command.TypeAliasSet, "a", AliasSet{Model: "m", Alias: "prod", Version: 3}, ErrNotFound},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := h.apply(c.typ, c.actor, c.body)
			if !errors.Is(err, c.want) {
				t.Fatalf("got %v, want %v", err, c.want)
			}
		})
	}
	r := Reader{DB: h.db}
	mv, err := r.ModelVersion("m", 1)
	if err != nil || mv.Status != StatusRegistered {
		t.Fatalf("failed commands changed state: %+v %v", mv, err)
	}
	h.must(command.TypeModelVersionApprove, "bob", ModelVersionApprove{Model: "m", Version: 1, Signature: sig, FourEyes: true})
	if _, err := h.apply(command.TypeModelVersionApprove, "bob", ModelVersionApprove{Model: "m", Version: 1, Signature: sig}); !errors.Is(err, ErrConflict) {
		t.Fatalf("second approval by the same identity: %v", err)
	}
	res := h.must(command.TypeAliasSet, "a", AliasSet{Model: "m", Alias: "production", Version: 1}).(AliasResult)
	if res.Version != 1 || res.Previous != 0 {
		t.Fatalf("alias result %+v", res)
	}
	m, _ := r.Model("m")
	if m.Aliases["production"] != 1 {
		t.Fatalf("alias not stored: %+v", m)
	}
}

func TestDevicesTelemetryAndLineage(t *testing.T) {
	h := newHarness(t)
	seedRegistry(h)
	h.must(command.TypeModelVersionApprove, "bob", ModelVersionApprove{Model: "m", Version: 1, Signature: Signature{KeyID: "k", Sig: "s"}})
	h.must(command.TypeDeviceCreate, "a", DeviceCreate{ID: "d1", Labels: map[string]string{"site": "berlin"}, TokenHash: "h1"})
	if _, err := h.apply(command.TypeDeviceCreate, "a", DeviceCreate{ID: "d1", TokenHash: "h2"}); !errors.Is(err, ErrExists) {
		t.Fatalf("duplicate device: %v", err)
	}
	res := h.must(command.TypeDeviceDesiredSet, "a", DeviceDesiredSet{ID: "d1", Model: "m", Version: 1}).(DesiredResult)
	if res.Rev != 1 || res.Desired["m"].Version != 1 {
		t.Fatalf("desired %+v", res)
	}
	one, on := 1, true
	h.must(command.TypeDeviceTelemetry, "hub", DeviceTelemetry{Devices: []DeviceObservation{
		{ID: "d1", Online: &on, LastSeen: 5, Reported: &Reported{Rev: 1, Models: map[string]ReportedModel{"m": {Active: &one, State: "active"}}}},
		{ID: "ghost", LastSeen: 5},
	}})
	// One window's validation and drift reports, split over two telemetry commands (the hub
	// batches by interval), count as one window; the next window counts again.
	h.must(command.TypeDeviceTelemetry, "hub", DeviceTelemetry{Devices: []DeviceObservation{
		{ID: "d1", Health: &HealthSummary{Model: "m", Version: 1, Rows: 100, Invalid: 3, At: 60_000}},
	}})
	h.must(command.TypeDeviceTelemetry, "hub", DeviceTelemetry{Devices: []DeviceObservation{
		{ID: "d1", Health: &HealthSummary{Model: "m", Version: 1, DatasetDrift: true, DriftShare: 0.5, At: 60_000}},
	}})
	r := Reader{DB: h.db}
	if d, _ := r.Device("d1"); d.Health == nil || d.Health.Rows != 100 || !d.Health.DatasetDrift || d.Health.DriftShare != 0.5 {
		t.Fatalf("health of a window reported in two parts: %+v", d.Health)
	}
	edge, err := r.RunsEdge("d1", "m", 1)
	if err != nil || edge.Attr["windows"] != float64(1) || edge.Attr["drift_windows"] != float64(1) || edge.Attr["rows"] != float64(100) {
		t.Fatalf("runs edge after one window in two parts: %+v %v", edge.Attr, err)
	}
	h.must(command.TypeDeviceTelemetry, "hub", DeviceTelemetry{Devices: []DeviceObservation{
		{ID: "d1", Health: &HealthSummary{Model: "m", Version: 1, Rows: 50, DatasetDrift: true, DriftShare: 0.25, At: 120_000}},
	}})
	if d, _ := r.Device("d1"); d.Health.Rows != 50 || d.Health.DriftShare != 0.25 {
		t.Fatalf("health of the next window: %+v", d.Health)
	}
	if edge, _ = r.RunsEdge("d1", "m", 1); edge.Attr["windows"] != float64(2) || edge.Attr["drift_windows"] != float64(2) || edge.Attr["rows"] != float64(150) {
		t.Fatalf("runs edge after the next window: %+v", edge.Attr)
	}
	d, err := r.Device("d1")
	if err != nil || !d.Online || d.Reported.Models["m"].Active == nil || *d.Reported.Models["m"].Active != 1 {
		t.Fatalf("device %+v %v", d, err)
	}
	off := "x"
	h.must(command.TypeDevicePatch, "a", DevicePatch{ID: "d1", Labels: map[string]*string{"site": nil, "tier": &off}})
	d, _ = r.Device("d1")
	if _, ok := d.Labels["site"]; ok || d.Labels["tier"] != "x" {
		t.Fatalf("labels %+v", d.Labels)
	}
	// Which devices ran a model trained on temps@1? Walk down from the dataset.
	g, err := r.Lineage(DatasetNode("temps", 1), "down", 2)
	if err != nil {
		t.Fatal(err)
	}
	var runs *LineageEdge
	for i, e := range g.Edges {
		if e.Kind == EdgeRuns {
			runs = &g.Edges[i]
		}
	}
	if runs == nil || runs.From != "device:d1" || runs.Attr["drift_windows"] != float64(2) || runs.Attr["invalid_rows"] != float64(3) {
		t.Fatalf("runs edge with health not found: %+v", g)
	}
	up, err := r.Lineage("device:d1", "up", 3)
	if err != nil || len(up.Nodes) != 3 {
		t.Fatalf("upstream of device: %+v %v", up, err)
	}
	p, err := r.PrincipalByTokenHash("h1")
	if err != nil || p.Kind != "device" || p.ID != "d1" {
		t.Fatalf("principal %+v %v", p, err)
	}
	h.must(command.TypeDeviceDelete, "a", DeviceDelete{ID: "d1"})
	if _, err := r.PrincipalByTokenHash("h1"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("deleted device's token still works: %v", err)
	}
}

func TestAuditChain(t *testing.T) {
	h := newHarness(t)
	seedRegistry(h)
	r := Reader{DB: h.db}
	page, err := r.Audit(AuditFilter{}, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Items) != 4 { // dataset, dataset version, model, model version; chunks are not audited
		t.Fatalf("want 4 audit entries, got %d", len(page.Items))
	}
	if i, err := VerifyChain("", page.Items); i != -1 || err != nil {
		t.Fatalf("chain broken at %d: %v", i, err)
	}
	tampered := append([]AuditEntry(nil), page.Items...)
	tampered[2].Actor = "mallory"
	if i, _ := VerifyChain("", tampered); i != 2 {
		t.Fatalf("tampered entry not found: %d", i)
	}
	alice, _ := r.Audit(AuditFilter{Actor: "nobody"}, "", 0)
	if len(alice.Items) != 0 {
		t.Fatalf("actor filter")
	}
	// Pagination walks every entry exactly once.
	var all []AuditEntry
	cursor := ""
	for {
		p, err := r.Audit(AuditFilter{}, cursor, 3)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, p.Items...)
		if p.NextCursor == nil {
			break
		}
		cursor = *p.NextCursor
	}
	if len(all) != 4 {
		t.Fatalf("paged %d entries", len(all))
	}
	if _, err := r.Audit(AuditFilter{}, "garbage!", 3); !errors.Is(err, ErrBadCursor) {
		t.Fatalf("bad cursor: %v", err)
	}
}

func TestSelector(t *testing.T) {
	labels := map[string]string{"site": "berlin", "tier": "edge"}
	cases := []struct {
		sel  string
		want bool
		bad  bool
	}{
		{"", true, false},
		{"site=berlin", true, false},
		{"site=berlin,tier=edge", true, false},
		{"site=paris", false, false},
		{"site!=paris", true, false},
		{"site in (paris,berlin)", true, false},
		{"site notin (paris,berlin)", false, false},
		{"canary", false, false},
		{"!canary", true, false},
		{"site in paris", false, true},
		{"=x", false, true},
	}
	for _, c := range cases {
		s, err := ParseSelector(c.sel)
		if (err != nil) != c.bad {
			t.Fatalf("%q: err %v", c.sel, err)
		}
		if err == nil && s.Matches(labels) != c.want {
			t.Fatalf("%q: got %v", c.sel, !c.want)
		}
	}
}

func TestIdempotentRequestID(t *testing.T) {
	h := newHarness(t)
	env, _ := command.New(command.TypeDatasetCreate, "req-1", 1, "a", DatasetCreate{Name: "x"})
	for i := 0; i < 2; i++ {
		var err error
		h.db.Update(func(txn *badger.Txn) error {
			_, err = Processor{}.Apply(txn, uint64(i+1), env)
			return nil
		})
		if err != nil {
			t.Fatalf("attempt %d: %v", i, err)
		}
	}
}

func TestVersionTags(t *testing.T) {
	h := newHarness(t)
	seedRegistry(h)
	r := Reader{DB: h.db}
	if _, err := h.apply(command.TypeTagSet, "a", TagSet{Model: "m", Version: 9, Tags: map[string]string{"k": "v"}}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("tag on a missing version: %v", err)
	}
	if _, err := h.apply(command.TypeTagSet, "a", TagSet{Model: "m", Version: 1, Tags: map[string]string{"": "v"}}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("empty tag key: %v", err)
	}
	res := h.must(command.TypeTagSet, "a", TagSet{Model: "m", Version: 1, Tags: map[string]string{"stage": "eval", "team": "ml", "a/b c": "x"}})
	if res != (TagSetResult{Model: "m", Version: 1}) {
		t.Fatalf("result %+v", res)
	}
	h.must(command.TypeTagSet, "a", TagSet{Model: "m", Version: 1, Tags: map[string]string{"stage": "prod", "team": ""}})
	mv, err := r.ModelVersion("m", 1)
	if err != nil {
		t.Fatal(err)
	}
	if len(mv.Tags) != 2 || mv.Tags["stage"] != "prod" || mv.Tags["a/b c"] != "x" {
		t.Fatalf("tags %v", mv.Tags)
	}
	// Approval and deprecation answer with the version's tags.
	approved := h.must(command.TypeModelVersionApprove, "bob", ModelVersionApprove{Model: "m", Version: 1, Signature: Signature{KeyID: "k", Sig: "s"}}).(ModelVersion)
	if approved.Tags["stage"] != "prod" {
		t.Fatalf("approval result tags %v", approved.Tags)
	}
	for range 2 { // the second time it is already deprecated
		if dep := h.must(command.TypeModelVersionDeprecate, "bob", ModelVersionDeprecate{Model: "m", Version: 1}).(ModelVersion); dep.Tags["stage"] != "prod" {
			t.Fatalf("deprecation result tags %v", dep.Tags)
		}
	}
	// Version 2, created with tags (an empty value is dropped): its tags do not leak into 1's.
	h.must(command.TypeModelVersionCreate, "alice", ModelVersionCreate{Model: "m", Digest: digestA, Size: 10,
		Chunks: []ChunkRef{{Digest: digestA, Size: 10}}, Tags: map[string]string{"stage": "new", "empty": ""}})
	page, err := r.ModelVersions("m", "", 0)
	if err != nil || len(page.Items) != 2 {
		t.Fatalf("versions %+v %v", page, err)
	}
	if got := page.Items[1].Tags; len(got) != 1 || got["stage"] != "new" {
		t.Fatalf("v2 tags %v", got)
	}
	if got := page.Items[0].Tags; len(got) != 2 || got["stage"] != "prod" {
		t.Fatalf("v1 tags in a list %v", got)
	}

	// A document written before tags had their own keys keeps its tags readable, and the first
	// tag write moves them out so that a deleted one stays deleted.
	legacy := mv
	legacy.Tags = map[string]string{"old": "1", "gone": "2"}
	if err := h.db.Update(func(txn *badger.Txn) error {
		if err := txn.Delete(versionKey(pVersionTags, "m", 1)); err != nil {
			return err
		}
		return putJSON(txn, versionKey(pModelVersion, "m", 1), legacy)
	}); err != nil {
		t.Fatal(err)
	}
	if mv, _ := r.ModelVersion("m", 1); len(mv.Tags) != 2 || mv.Tags["old"] != "1" {
		t.Fatalf("legacy tags not read: %v", mv.Tags)
	}
	h.must(command.TypeTagSet, "a", TagSet{Model: "m", Version: 1, Tags: map[string]string{"gone": "", "new": "3"}})
	mv, _ = r.ModelVersion("m", 1)
	if len(mv.Tags) != 2 || mv.Tags["old"] != "1" || mv.Tags["new"] != "3" {
		t.Fatalf("after the first tag write on a legacy document: %v", mv.Tags)
	}
	if err := h.db.View(func(txn *badger.Txn) error {
		doc, err := getModelVersion(txn, "m", 1)
		if err == nil && doc.Tags != nil {
			t.Errorf("legacy tags left in the document: %v", doc.Tags)
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
}

func TestTagEncoding(t *testing.T) {
	tags := map[string]string{}
	var enc []byte
	for i, step := range []map[string]string{
		{"b": "2", "a": "1", "c": "3"},
		{"b": "", "d": "4", "a": "one"},
		{"zz": "", "0": "zero"},
		{"0": "", "a": "", "c": "", "d": ""},
	} {
		var err error
		if enc, err = mergeTags(enc, step); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		for k, v := range step {
			if v == "" {
				delete(tags, k)
			} else {
				tags[k] = v
			}
		}
		mv := ModelVersion{}
		pairs, err := decodeTagPairs(enc)
		if len(tags) == 0 {
			if enc != nil {
				t.Fatalf("step %d: no tags left but %q", i, enc)
			}
			continue
		}
		if err != nil {
			t.Fatalf("step %d: decode: %v", i, err)
		}
		mv.Tags = map[string]string{}
		for _, p := range pairs {
			mv.Tags[string(p.k)] = string(p.v)
		}
		if fmt.Sprint(mv.Tags) != fmt.Sprint(tags) {
			t.Fatalf("step %d: got %v, want %v", i, mv.Tags, tags)
		}
	}
	good := encodeTags(map[string]string{"a": "1", "b": "2"})
	for _, bad := range [][]byte{
		{}, {0xff}, {5}, good[:len(good)-1], append(append([]byte{}, good...), 0),
		appendTagPairs(nil, []tagPair{{[]byte("b"), []byte("1")}, {[]byte("a"), []byte("2")}}), // unsorted
	} {
		if _, err := decodeTagPairs(bad); err == nil {
			t.Errorf("decode %q: no error", bad)
		}
		if _, err := mergeTags(bad, map[string]string{"x": "y"}); err == nil && len(bad) > 0 {
			t.Errorf("merge into %q: no error", bad)
		}
	}
}

func FuzzDecodeTags(f *testing.F) {
	f.Add(encodeTags(map[string]string{"a": "1", "stage": "prod"}))
	f.Add([]byte{1, 1, 'a'})
	f.Fuzz(func(t *testing.T, b []byte) {
		pairs, err := decodeTagPairs(b)
		if err != nil {
			return
		}
		again, err := decodeTagPairs(appendTagPairs(nil, pairs))
		if err != nil || fmt.Sprint(again) != fmt.Sprint(pairs) {
			t.Fatalf("round trip of %q: %q %v", b, again, err)
		}
	})
}

// TestUnhandledTypeIsUnknown: a type the processor does not apply is reported as
// command.ErrUnknownType, which makes the store stop the node instead of skipping it.
func TestUnhandledTypeIsUnknown(t *testing.T) {
	h := newHarness(t)
	for _, typ := range []command.Type{command.TypeNodeSet, command.TypeBatch, 0x0777} {
		if _, err := h.apply(typ, "a", struct{}{}); !errors.Is(err, command.ErrUnknownType) {
			t.Errorf("type %d: %v, want command.ErrUnknownType", typ, err)
		}
	}
}

// TestApproveStoresBothSignatures: an approval of this release stores the legacy manifest
// signature (kind empty) and the approval signature (kind SigApproval) side by side, also when
// one key made both (a fresh cluster's first online key is its first leader's node key); an
// approval proposed by a leader of the previous release (legacy signature only) applies; one
// with neither is refused.
func TestApproveStoresBothSignatures(t *testing.T) {
	h := newHarness(t)
	seedRegistry(h)
	h.must(command.TypeModelVersionCreate, "alice", ModelVersionCreate{
		Model: "m", Digest: digestA, Size: 10, Chunks: []ChunkRef{{Digest: digestA, Size: 10}}})
	if _, err := h.apply(command.TypeModelVersionApprove, "bob", ModelVersionApprove{Model: "m", Version: 1}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("approval without signatures: %v, want ErrInvalid", err)
	}
	mv := h.must(command.TypeModelVersionApprove, "bob", ModelVersionApprove{Model: "m", Version: 1,
		Signature: Signature{KeyID: "k", Sig: "legacy"}, Approval: Signature{KeyID: "k", Sig: "approval"}}).(ModelVersion)
	if len(mv.Signatures) != 2 {
		t.Fatalf("signatures %+v, want the legacy and the approval one", mv.Signatures)
	}
	if got, ok := LegacySignature(mv); !ok || got.Sig != "legacy" {
		t.Errorf("LegacySignature = %+v %v, want the legacy one", got, ok)
	}
	if got, ok := ApprovalSignature(mv, artifact.Approval{}, artifact.NewKeyRing()); ok {
		t.Errorf("ApprovalSignature with no online key = %+v, want none", got)
	}
	for _, s := range mv.Signatures {
		if (s.Sig == "approval") != (s.Kind == SigApproval) {
			t.Errorf("signature %+v has the wrong kind", s)
		}
	}
	old := h.must(command.TypeModelVersionApprove, "carol", ModelVersionApprove{Model: "m", Version: 2,
		Signature: Signature{KeyID: "k2", Sig: "old"}}).(ModelVersion)
	if got, ok := LegacySignature(old); len(old.Signatures) != 1 || !ok || got.Sig != "old" {
		t.Errorf("approval of an older leader stored %+v", old.Signatures)
	}
}
