package api_test

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/driftline/driftline/hub/api"
	"github.com/driftline/driftline/hub/state"
	"github.com/driftline/driftline/internal/testhelp"
	"github.com/driftline/driftline/shared/artifact"
)

// TestRegistryHappyPath pushes datasets and models, approves, checks the signature against
// GET /api/v1/keys and moves an alias.
func TestRegistryHappyPath(t *testing.T) {
	h := startHub(t, nil)
	pub := h.token("pub", state.RolePublisher)
	appr := h.token("appr", state.RoleApprover)

	if v := h.pushDataset("temps", ""); v != 1 {
		t.Fatalf("first dataset version = %d, want 1", v)
	}
	if v := h.pushDataset("temps", `[{"dataset":"temps","version":1}]`); v != 2 {
		t.Fatalf("second dataset version = %d, want 2", v)
	}
	var dv state.DatasetVersion
	h.must(http.StatusOK, "GET", "/api/v1/datasets/temps/versions/2", h.admin, nil, &dv)
	sum := sha256.Sum256([]byte("temp,site\n21.5,berlin\n22.0,paris\n"))
	if want := "sha256:" + hex.EncodeToString(sum[:]); dv.SampleSHA256 != want {
		t.Errorf("sample_sha256 = %q, want %q", dv.SampleSHA256, want)
	}
	if dv.SourceURI != "s3://bucket/temps.csv" || len(dv.Parents) != 1 || dv.Parents[0].Version != 1 {
		t.Errorf("dataset version = %+v, want source_uri and parent temps@1", dv)
	}
	r := h.must(http.StatusOK, "GET", "/api/v1/datasets/temps/versions/1/contract", h.admin, nil, nil)
	if !jsonEqual(t, r.body, []byte(testContract)) {
		t.Errorf("contract = %s, want %s", r.body, testContract)
	}
	r = h.do("GET", "/api/v1/datasets/temps/versions/1/profile", h.admin, nil)
	if dv.ProfileDigest != "" {
		if r.code != http.StatusOK || len(r.body) == 0 {
			t.Errorf("profile: %d (%d bytes), want 200 with the profile", r.code, len(r.body))
		}
	} else {
		wantProblem(t, r, http.StatusNotFound, "")
	}
	var ds state.Dataset
	h.must(http.StatusOK, "GET", "/api/v1/datasets/temps", h.admin, nil, &ds)
	if ds.LatestVersion != 2 || ds.CreatedBy != "admin" {
		t.Errorf("dataset = %+v, want latest_version 2 created by admin", ds)
	}

	art := bytes.Repeat([]byte("weights "), 4096)
	mv := h.pushModel("fraud", pub, art, `{"trained_on":[{"dataset":"temps","version":2}],"metrics":{"auc":0.91},"params":{"depth":6},"code_ref":"git:abc","format":"onnx"}`)
	artSum := sha256.Sum256(art)
	if mv.Version != 1 || mv.Size != int64(len(art)) || mv.Digest != "sha256:"+hex.EncodeToString(artSum[:]) {
		t.Fatalf("model version = %+v, want version 1, size %d and the file's sha256", mv, len(art))
	}
	if mv.Status != state.StatusRegistered || mv.CreatedBy != "pub" || len(mv.TrainedOn) != 1 {
		t.Fatalf("model version = %+v, want registered by pub, trained on one dataset version", mv)
	}

	var approved modelVersionOut
	h.must(http.StatusOK, "POST", "/api/v1/models/fraud/versions/1/approve", appr, api.ApproveRequest{Comment: "looks good"}, &approved)
	// Two signatures: the approval signature, and the legacy one over the manifest by the
	// leader's node key (for agents of the previous release).
	if approved.Status != state.StatusApproved || len(approved.Signatures) != 2 || len(approved.Approvals) != 1 {
		t.Fatalf("approved = %+v, want approved with two signatures and one approval", approved)
	}
	approvalSig, legacySig := approved.Signatures[0], approved.Signatures[1]
	if approvalSig["kind"] != state.SigApproval {
		approvalSig, legacySig = legacySig, approvalSig
	}
	if approvalSig["kind"] != state.SigApproval || legacySig["kind"] != "" {
		t.Fatalf("signatures = %v, want one of kind %s and one legacy", approved.Signatures, state.SigApproval)
	}
	if approved.Approvals[0]["by"] != "appr" || approved.Approvals[0]["comment"] != "looks good" {
		t.Errorf("approval = %v, want by appr with the comment", approved.Approvals[0])
	}
	var keys struct {
		Items []state.SigningKey `json:"items"`
	}
	h.must(http.StatusOK, "GET", "/api/v1/keys", appr, nil, &keys)
	sig := artifact.Signature{KeyID: approvalSig["key_id"], Sig: approvalSig["sig"]}
	var trusted []ed25519.PublicKey
	for _, k := range keys.Items {
		if k.KeyID == sig.KeyID {
			pk, err := artifact.ParsePublicKey([]byte(k.PublicKey))
			if err != nil {
				t.Fatalf("key %s: %v", k.KeyID, err)
			}
			trusted = append(trusted, pk)
		}
	}
	if len(trusted) != 1 {
		t.Fatalf("GET /api/v1/keys = %+v, want the key %s", keys.Items, sig.KeyID)
	}
	mvs, err := h.n.Reader().ModelVersion("fraud", 1)
	if err != nil {
		t.Fatal(err)
	}
	subject, err := h.n.Reader().ApprovalOf(mvs)
	if err != nil {
		t.Fatal(err)
	}
	if subject.ContractDigest == "" || subject.Dataset != "temps" {
		t.Errorf("approval binds %+v, want the contract of temps@1", subject)
	}
	if err := artifact.NewKeyRing(trusted...).VerifyApproval(subject, sig); err != nil {
		t.Errorf("approval signature does not verify against the listed key: %v", err)
	}
	manifest, err := h.n.Reader().Manifest("fraud", 1)
	if err != nil {
		t.Fatal(err)
	}
	nodeKeys, err := h.n.Reader().SigningKeys()
	if err != nil {
		t.Fatal(err)
	}
	var registered []ed25519.PublicKey
	for _, k := range nodeKeys {
		if pk, err := artifact.ParsePublicKey([]byte(k.PublicKey)); err == nil {
			registered = append(registered, pk)
		}
	}
	if err := artifact.Verify(registered, manifest, artifact.Signature{KeyID: legacySig["key_id"], Sig: legacySig["sig"]}); err != nil {
		t.Errorf("legacy signature does not verify over the manifest against the registered node keys: %v", err)
	}

	// Aliases: set, read, move atomically to a second version.
	var ar state.AliasResult
	h.must(http.StatusOK, "PUT", "/api/v1/models/fraud/aliases/production", pub, api.VersionRequest{Version: ptr(1)}, &ar)
	h.must(http.StatusOK, "GET", "/api/v1/models/fraud/aliases/production", appr, nil, &ar)
	if ar.Version != 1 {
		t.Fatalf("alias = %+v, want version 1", ar)
	}
	h.pushModel("fraud", pub, append(art, 'x'), `{"trained_on":[{"dataset":"temps","version":1}]}`)
	h.must(http.StatusOK, "PUT", "/api/v1/models/fraud/aliases/production", appr, api.VersionRequest{Version: ptr(2)}, &ar)
	if ar.Version != 2 || ar.Previous != 1 {
		t.Errorf("alias move = %+v, want version 2, previous 1", ar)
	}
	var m state.Model
	h.must(http.StatusOK, "GET", "/api/v1/models/fraud", h.admin, nil, &m)
	if m.Aliases["production"] != 2 || m.LatestVersion != 2 {
		t.Errorf("model = %+v, want production=2, latest 2", m)
	}

	// Tags merge; an empty value deletes.
	h.must(http.StatusOK, "PUT", "/api/v1/models/fraud/versions/2/tags", pub, api.TagsRequest{Tags: map[string]string{"team": "risk", "tmp": "x"}}, nil)
	var tagged state.ModelVersion
	h.must(http.StatusOK, "PUT", "/api/v1/models/fraud/versions/2/tags", pub, api.TagsRequest{Tags: map[string]string{"tmp": ""}}, &tagged)
	if len(tagged.Tags) != 1 || tagged.Tags["team"] != "risk" {
		t.Errorf("tags = %v, want only team=risk", tagged.Tags)
	}

	// Deprecation, then approving the deprecated version is a conflict.
	var dep modelVersionOut
	h.must(http.StatusOK, "POST", "/api/v1/models/fraud/versions/2/deprecate", appr, nil, &dep)
	if dep.Status != state.StatusDeprecated {
		t.Errorf("deprecate: status %q", dep.Status)
	}
	wantProblem(t, h.do("POST", "/api/v1/models/fraud/versions/2/approve", appr, nil), http.StatusConflict, "")

	// Version lists hide the chunk list and manifest bytes.
	r = h.must(http.StatusOK, "GET", "/api/v1/models/fraud/versions", h.admin, nil, nil)
	if bytes.Contains(r.body, []byte(`"chunks":`)) || bytes.Contains(r.body, []byte(`"manifest":`)) {
		t.Errorf("version list shows chunks or manifest: %s", r.body)
	}
}

func ptr[T any](v T) *T { return &v }

func jsonEqual(t *testing.T, a, b []byte) bool {
	t.Helper()
	var x, y any
	if err := json.Unmarshal(a, &x); err != nil {
		t.Fatalf("%s: %v", a, err)
	}
	if err := json.Unmarshal(b, &y); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	xa, _ := json.Marshal(x)
	ya, _ := json.Marshal(y)
	return bytes.Equal(xa, ya)
}

// TestDevices covers enrolment (token shown once), labels, selectors, desired state and removal.
func TestDevices(t *testing.T) {
	h := startHub(t, nil)
	var created map[string]any
	h.must(http.StatusCreated, "POST", "/api/v1/devices", h.admin,
		api.DeviceRequest{ID: "dev-1", Labels: map[string]string{"site": "berlin", "tier": "edge"}}, &created)
	devTok, _ := created["token"].(string)
	if !strings.HasPrefix(devTok, "dl_") || created["id"] != "dev-1" {
		t.Fatalf("device create = %v, want id dev-1 and a dl_ token", created)
	}
	h.must(http.StatusCreated, "POST", "/api/v1/devices", h.admin, api.DeviceRequest{ID: "dev-2", Labels: map[string]string{"site": "paris"}}, nil)
	h.must(http.StatusCreated, "POST", "/api/v1/devices", h.admin, api.DeviceRequest{ID: "dev-3", Labels: map[string]string{"site": "berlin", "tier": "core"}}, nil)

	for _, path := range []string{"/api/v1/devices/dev-1", "/api/v1/devices"} {
		r := h.must(http.StatusOK, "GET", path, h.admin, nil, nil)
		if bytes.Contains(r.body, []byte(devTok)) || bytes.Contains(r.body, []byte(`"token`)) {
			t.Errorf("GET %s shows the token: %s", path, r.body)
		}
	}
	var d map[string]any
	h.must(http.StatusOK, "GET", "/api/v1/devices/dev-1", devTok, nil, &d)
	for _, k := range []string{"online", "labels", "reported"} {
		if _, ok := d[k]; !ok {
			t.Errorf("device has no %q: %v", k, d)
		}
	}
	wantProblem(t, h.do("GET", "/api/v1/devices/dev-2", devTok, nil), http.StatusForbidden, "")

	var patched state.Device
	h.must(http.StatusOK, "PATCH", "/api/v1/devices/dev-1", h.admin, `{"labels":{"tier":null,"rack":"r1"}}`, &patched)
	if want := map[string]string{"site": "berlin", "rack": "r1"}; !mapsEqual(patched.Labels, want) {
		t.Errorf("labels after patch = %v, want %v", patched.Labels, want)
	}

	selectors := []struct {
		sel  string
		want []string
	}{
		{"", []string{"dev-1", "dev-2", "dev-3"}},
		{"site=berlin", []string{"dev-1", "dev-3"}},
		{"site=berlin,rack=r1", []string{"dev-1"}},
		{"site!=berlin", []string{"dev-2"}},
		{"site in (paris,rome)", []string{"dev-2"}},
		{"tier", []string{"dev-3"}},
		{"!rack", []string{"dev-2", "dev-3"}},
		{"site=nowhere", []string{}},
	}
	for _, c := range selectors {
		t.Run("selector="+c.sel, func(t *testing.T) {
			var p state.Page[state.Device]
			h.must(http.StatusOK, "GET", "/api/v1/devices?selector="+url.QueryEscape(c.sel), h.admin, nil, &p)
			got := []string{}
			for _, d := range p.Items {
				got = append(got, d.ID)
			}
			if !slices.Equal(got, c.want) {
				t.Errorf("selector %q = %v, want %v", c.sel, got, c.want)
			}
		})
	}
	wantProblem(t, h.do("GET", "/api/v1/devices?selector="+url.QueryEscape("=x"), h.admin, nil), http.StatusBadRequest, "selector")

	// Desired state: only approved versions.
	pub := h.token("pub", state.RolePublisher)
	appr := h.token("appr", state.RoleApprover)
	h.pushModel("m", pub, []byte("model bytes"), "")
	wantProblem(t, h.do("PUT", "/api/v1/devices/dev-1/models/m", h.admin, api.VersionRequest{Version: ptr(1)}), http.StatusConflict, "")
	h.must(http.StatusOK, "POST", "/api/v1/models/m/versions/1/approve", appr, nil, nil)
	h.must(http.StatusOK, "PUT", "/api/v1/devices/dev-1/models/m", h.admin, api.VersionRequest{Version: ptr(1)}, nil)
	var dev state.Device
	h.must(http.StatusOK, "GET", "/api/v1/devices/dev-1", h.admin, nil, &dev)
	if dev.Desired["m"].Version != 1 || dev.DesiredRev < 1 {
		t.Errorf("desired = %+v rev %d, want m=1", dev.Desired, dev.DesiredRev)
	}
	wantProblem(t, h.do("PUT", "/api/v1/devices/dev-1/models/m", h.admin, api.VersionRequest{Version: ptr(7)}), http.StatusNotFound, "")
	wantProblem(t, h.do("PUT", "/api/v1/devices/ghost/models/m", h.admin, api.VersionRequest{Version: ptr(1)}), http.StatusNotFound, "")

	// Removal revokes the device's token.
	h.must(http.StatusOK, "DELETE", "/api/v1/devices/dev-1", h.admin, nil, nil)
	wantProblem(t, h.do("GET", "/api/v1/devices/dev-1", devTok, nil), http.StatusUnauthorized, "")
	wantProblem(t, h.do("GET", "/api/v1/devices/dev-1", h.admin, nil), http.StatusNotFound, "")
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// edgeSet renders a lineage graph's edges as "from -kind-> to" strings, sorted.
func edgeSet(g state.Graph) []string {
	var out []string
	for _, e := range g.Edges {
		out = append(out, e.From+" -"+e.Kind+"-> "+e.To)
	}
	sort.Strings(out)
	return out
}

// TestLineage walks up and down from a dataset version.
func TestLineage(t *testing.T) {
	h := startHub(t, nil)
	h.pushDataset("raw", "")
	h.pushDataset("clean", `[{"dataset":"raw","version":1}]`)
	h.pushModel("m", h.admin, []byte("model"), `{"trained_on":[{"dataset":"clean","version":1}]}`)

	cases := []struct {
		node, dir string
		want      []string
	}{
		{"dataset:clean@1", "down", []string{"model:m@1 -trained_on-> dataset:clean@1"}},
		{"dataset:clean@1", "up", []string{"dataset:clean@1 -derived_from-> dataset:raw@1"}},
		{"dataset:clean@1", "both", []string{"dataset:clean@1 -derived_from-> dataset:raw@1", "model:m@1 -trained_on-> dataset:clean@1"}},
		{"dataset:raw@1", "down", []string{"dataset:clean@1 -derived_from-> dataset:raw@1", "model:m@1 -trained_on-> dataset:clean@1"}},
		{"model:m@1", "up", []string{"dataset:clean@1 -derived_from-> dataset:raw@1", "model:m@1 -trained_on-> dataset:clean@1"}},
	}
	for _, c := range cases {
		t.Run(c.node+"/"+c.dir, func(t *testing.T) {
			var g state.Graph
			h.must(http.StatusOK, "GET", "/api/v1/lineage?node="+url.QueryEscape(c.node)+"&direction="+c.dir, h.admin, nil, &g)
			if got := edgeSet(g); !slices.Equal(got, c.want) {
				t.Errorf("edges = %v, want %v", got, c.want)
			}
		})
	}
	var g state.Graph
	h.must(http.StatusOK, "GET", "/api/v1/lineage?node=dataset:raw@1&direction=down&depth=1", h.admin, nil, &g)
	if got := edgeSet(g); len(got) != 1 {
		t.Errorf("depth 1 from raw@1 = %v, want one edge", got)
	}
}

// loadEvent reads the OpenLineage example event as a generic map.
func loadEvent(t *testing.T) map[string]any {
	t.Helper()
	b, err := os.ReadFile("testdata/openlineage/example_full_event.json")
	if err != nil {
		t.Fatal(err)
	}
	var ev map[string]any
	if err := json.Unmarshal(b, &ev); err != nil {
		t.Fatal(err)
	}
	return ev
}

// deletePath removes a dotted path ("run.runId") from a decoded JSON object.
func deletePath(m map[string]any, path string) {
	keys := strings.Split(path, ".")
	for _, k := range keys[:len(keys)-1] {
		m = m[k].(map[string]any)
	}
	delete(m, keys[len(keys)-1])
}

// TestOpenLineage accepts the OpenLineage client's example event and refuses it when a field
// the 2-0-2 schema requires is missing.
func TestOpenLineage(t *testing.T) {
	h := startHub(t, nil)
	pub := h.token("pub", state.RolePublisher)
	h.must(http.StatusCreated, "POST", "/api/v1/openlineage", pub, loadEvent(t), nil)
	var g state.Graph
	h.must(http.StatusOK, "GET", "/api/v1/lineage?node="+url.QueryEscape("job:my-scheduler-namespace/myjob.mytask"), h.admin, nil, &g)
	want := []string{
		"job:my-scheduler-namespace/myjob.mytask -consumed-> dataset:my-datasource-namespace/instance.schema.table",
		"job:my-scheduler-namespace/myjob.mytask -produced-> dataset:my-datasource-namespace/instance.schema.table",
	}
	if got := edgeSet(g); !slices.Equal(got, want) {
		t.Errorf("job edges = %v, want %v", got, want)
	}

	required := []struct{ path, field string }{
		{"eventTime", "eventTime"},
		{"producer", "producer"},
		{"schemaURL", "schemaURL"},
		{"run", "run.runId"},
		{"run.runId", "run.runId"},
		{"job", "job.namespace"},
		{"job.namespace", "job.namespace"},
		{"job.name", "job.name"},
	}
	for _, c := range required {
		t.Run("missing "+c.path, func(t *testing.T) {
			ev := loadEvent(t)
			deletePath(ev, c.path)
			wantProblem(t, h.do("POST", "/api/v1/openlineage", pub, ev), http.StatusBadRequest, c.field)
		})
	}
	bad := []struct {
		name, path string
		value      any
		field      string
	}{
		{"eventTime not a date", "eventTime", "yesterday", "eventTime"},
		{"runId not a uuid", "run.runId", "42", "run.runId"},
		{"eventType not in the enum", "eventType", "DONE", "eventType"},
		{"eventTime wrong type", "eventTime", 5, "eventTime"},
	}
	for _, c := range bad {
		t.Run(c.name, func(t *testing.T) {
			ev := loadEvent(t)
			keys := strings.Split(c.path, ".")
			m := ev
			for _, k := range keys[:len(keys)-1] {
				m = m[k].(map[string]any)
			}
			m[keys[len(keys)-1]] = c.value
			wantProblem(t, h.do("POST", "/api/v1/openlineage", pub, ev), http.StatusBadRequest, c.field)
		})
	}

	// The registry's own actions export as RunEvents.
	h.pushDataset("d", "")
	var exp struct {
		Items []api.RunEvent `json:"items"`
	}
	h.must(http.StatusOK, "GET", "/api/v1/openlineage/events", h.admin, nil, &exp)
	if len(exp.Items) != 1 || len(exp.Items[0].Outputs) != 1 || exp.Items[0].Outputs[0].Name != "d@1" {
		t.Errorf("export = %+v, want one event producing d@1", exp.Items)
	}
}

// TestAuditChain reads the whole audit log page by page and verifies its hash chain; a
// tampered entry must break it.
func TestAuditChain(t *testing.T) {
	h := startHub(t, nil)
	h.pushDataset("d", "")
	h.pushModel("m", h.admin, []byte("x"), "")
	h.must(http.StatusCreated, "POST", "/api/v1/devices", h.admin, api.DeviceRequest{ID: "dev"}, nil)
	h.token("viewer", state.RoleViewer)

	entries := walkPages[state.AuditEntry](t, h, "/api/v1/audit", 2)
	if len(entries) < 6 {
		t.Fatalf("audit has %d entries, want at least 6", len(entries))
	}
	for i, e := range entries {
		if e.Seq != uint64(i+1) {
			t.Fatalf("entry %d has seq %d", i, e.Seq)
		}
	}
	if i, err := state.VerifyChain("", entries); i != -1 || err != nil {
		t.Fatalf("audit chain broken at %d: %v", i, err)
	}
	tampered := slices.Clone(entries)
	tampered[3].Actor = "mallory"
	if i, _ := state.VerifyChain("", tampered); i != 3 {
		t.Errorf("tampered chain: first bad entry %d, want 3", i)
	}

	var p state.Page[state.AuditEntry]
	h.must(http.StatusOK, "GET", "/api/v1/audit?actor=admin", h.admin, nil, &p)
	for _, e := range p.Items {
		if e.Actor != "admin" {
			t.Errorf("actor filter let through %+v", e)
		}
	}
	if len(p.Items) == 0 {
		t.Error("actor=admin found nothing")
	}
	h.must(http.StatusOK, "GET", "/api/v1/audit?since="+url.QueryEscape("2999-01-01T00:00:00Z"), h.admin, nil, &p)
	if len(p.Items) != 0 {
		t.Errorf("since the future: %d entries", len(p.Items))
	}
}

// TestArtifactRoundTrip pushes a 5 MB random file, reads it back whole, then pushes a version
// that shares 95% of its bytes and checks that the hub reused the shared chunks.
func TestArtifactRoundTrip(t *testing.T) {
	h := startHub(t, nil)
	rng := rand.New(rand.NewPCG(1, 2))
	art := make([]byte, 5<<20)
	for i := range art {
		art[i] = byte(rng.Uint32())
	}
	v1 := h.pushModel("big", h.admin, art, `{"format":"onnx"}`)
	if v1.Size != int64(len(art)) || v1.ChunksStored != v1.ChunkCount || v1.ChunksReused != 0 {
		t.Fatalf("v1 = %+v, want all %d bytes in fresh chunks", v1, len(art))
	}
	r := h.must(http.StatusOK, "GET", "/api/v1/models/big/versions/1/artifact", h.admin, nil, nil)
	if !bytes.Equal(r.body, art) {
		t.Fatalf("artifact round trip: got %d bytes, not the %d pushed", len(r.body), len(art))
	}
	if r.header.Get("X-Driftline-Digest") != v1.Digest {
		t.Errorf("X-Driftline-Digest = %q, want %q", r.header.Get("X-Driftline-Digest"), v1.Digest)
	}

	art2 := slices.Clone(art)
	changed := len(art2) / 20 // 5%, in one run in the middle
	start := len(art2) / 2
	for i := start; i < start+changed; i++ {
		art2[i] = byte(rng.Uint32())
	}
	v2 := h.pushModel("big", h.admin, art2, "")
	t.Logf("v1: %d chunks; v2: %d chunks, %d stored, %d reused", v1.ChunkCount, v2.ChunkCount, v2.ChunksStored, v2.ChunksReused)
	if v2.ChunksReused == 0 || v2.ChunksReused+v2.ChunksStored != v2.ChunkCount {
		t.Fatalf("v2 = %+v: want reused chunks, stored+reused = chunk_count", v2)
	}
	if float64(v2.ChunksReused) < 0.85*float64(v2.ChunkCount) {
		t.Errorf("v2 reused %d of %d chunks; 95%% of the bytes are shared", v2.ChunksReused, v2.ChunkCount)
	}
	r = h.must(http.StatusOK, "GET", "/api/v1/models/big/versions/2/artifact", h.admin, nil, nil)
	if !bytes.Equal(r.body, art2) {
		t.Fatal("second artifact does not round-trip")
	}
}

// TestClusterAndHealth checks the shapes outside tools read: GET /api/v1/cluster, /readyz.
func TestClusterAndHealth(t *testing.T) {
	h := startHub(t, nil)
	var cs struct {
		Leader *struct {
			ID   string `json:"id"`
			HTTP string `json:"http"`
		} `json:"leader"`
		Nodes []struct {
			ID    string `json:"id"`
			Raft  string `json:"raft"`
			HTTP  string `json:"http"`
			State string `json:"state"`
			Voter bool   `json:"voter"`
		} `json:"nodes"`
		Term         uint64 `json:"term"`
		CommitIndex  uint64 `json:"commit_index"`
		AppliedIndex uint64 `json:"applied_index"`
	}
	h.must(http.StatusOK, "GET", "/api/v1/cluster?consistency=strong", h.admin, nil, &cs)
	if cs.Leader == nil || cs.Leader.ID != h.n.ID() || len(cs.Nodes) != 1 || !cs.Nodes[0].Voter || cs.Term == 0 || cs.CommitIndex == 0 {
		t.Errorf("cluster = %+v, want this node as the one voter and leader", cs)
	}
	if u := "http://" + cs.Leader.HTTP; u != h.url {
		t.Errorf("leader http = %q, want %q", u, h.url)
	}
	// Readiness latches the commit index at the first probe and answers 503 until the node has
	// applied it: an entry the node committed just then (its start-up commands) may still be in
	// flight, so a probe may see 503 once before 200, as a load balancer's would.
	var ready map[string]any
	testhelp.WaitFor(t, 10*time.Second, "/readyz answers 200", func() bool {
		return h.do("GET", "/readyz", "", nil).code == http.StatusOK
	})
	h.must(http.StatusOK, "GET", "/readyz", "", nil, &ready)
	if ready["ready"] != true {
		t.Errorf("readyz = %v", ready)
	}
	r := h.must(http.StatusOK, "GET", "/metrics", "", nil, nil)
	if !bytes.Contains(r.body, []byte(api.MetricRequests)) {
		t.Errorf("/metrics has no %s", api.MetricRequests)
	}
}

// TestRollouts covers the rollout routes' answers: create, overlap, refusals, reads and the
// operator actions.
func TestRollouts(t *testing.T) {
	h := startHub(t, nil)
	for i, site := range []string{"berlin", "berlin", "paris", "paris"} {
		h.must(http.StatusCreated, "POST", "/api/v1/devices", h.admin,
			api.DeviceRequest{ID: "dev-" + string(rune('1'+i)), Labels: map[string]string{"site": site}}, nil)
	}
	appr := h.token("appr", state.RoleApprover)
	h.pushModel("m", h.admin, []byte("v1"), "")
	h.pushModel("m", h.admin, []byte("v2"), "")
	h.must(http.StatusOK, "POST", "/api/v1/models/m/versions/1/approve", appr, nil, nil)

	var ro state.Rollout
	h.must(http.StatusCreated, "POST", "/api/v1/rollouts", appr,
		`{"model":"m","version":1,"selector":"site=berlin","waves":[50,100],"bake_seconds":0,"gates":{"max_failure_rate":0.5}}`, &ro)
	if ro.ID == "" || ro.State != state.RolloutRunning || ro.Total != 2 {
		t.Fatalf("rollout = %+v, want running over 2 devices", ro)
	}

	refused := []struct {
		name, body string
		status     int
		field      string
	}{
		{"overlapping devices", `{"model":"m","version":1}`, http.StatusConflict, ""},
		{"version not approved", `{"model":"m","version":2,"selector":"site=paris"}`, http.StatusBadRequest, "version"},
		{"missing version", `{"model":"m","version":9,"selector":"site=paris"}`, http.StatusBadRequest, "version"},
		{"selector picks nothing", `{"model":"m","version":1,"selector":"site=rome"}`, http.StatusBadRequest, "selector"},
		{"bad gate", `{"model":"m","version":1,"selector":"site=paris","gates":{"max_drift_share":2}}`, http.StatusBadRequest, "gates.max_drift_share"},
		{"bad on_gate_failure", `{"model":"m","version":1,"selector":"site=paris","on_gate_failure":"ignore"}`, http.StatusBadRequest, "on_gate_failure"},
	}
	for _, c := range refused {
		t.Run(c.name, func(t *testing.T) {
			p := wantProblem(t, h.do("POST", "/api/v1/rollouts", appr, c.body), c.status, c.field)
			if c.status == http.StatusConflict && p.Extra["rollout"] != ro.ID {
				t.Errorf("conflict extra = %v, want the rollout %s", p.Extra, ro.ID)
			}
		})
	}

	var list state.Page[state.Rollout]
	h.must(http.StatusOK, "GET", "/api/v1/rollouts", h.admin, nil, &list)
	if len(list.Items) != 1 || list.Items[0].ID != ro.ID {
		t.Errorf("rollout list = %+v", list.Items)
	}
	var got map[string]any
	h.must(http.StatusOK, "GET", "/api/v1/rollouts/"+ro.ID, h.admin, nil, &got)
	for _, k := range []string{"state", "wave", "gates", "devices"} {
		if _, ok := got[k]; !ok {
			t.Errorf("rollout has no %q: %v", k, got)
		}
	}
	var devs state.Page[state.RolloutDevice]
	h.must(http.StatusOK, "GET", "/api/v1/rollouts/"+ro.ID+"/devices", h.admin, nil, &devs)
	if len(devs.Items) != 2 {
		t.Errorf("rollout devices = %+v, want dev-1 and dev-2", devs.Items)
	}

	steps := []struct {
		action string
		status int
		state  string
	}{
		{"pause", http.StatusOK, state.RolloutPaused},
		{"pause", http.StatusConflict, ""},
		{"resume", http.StatusOK, state.RolloutRunning},
		{"abort", http.StatusOK, state.RolloutAborted},
		{"resume", http.StatusConflict, ""},
		{"explode", http.StatusNotFound, ""},
	}
	for _, s := range steps {
		r := h.do("POST", "/api/v1/rollouts/"+ro.ID+"/"+s.action, appr, reasonBody(s.action))
		if s.status != http.StatusOK {
			wantProblem(t, r, s.status, "")
			continue
		}
		var after state.Rollout
		if r.code != http.StatusOK {
			t.Fatalf("%s: %d %s", s.action, r.code, r.body)
		}
		r.decode(t, &after)
		if after.State != s.state {
			t.Errorf("after %s: state %q, want %q", s.action, after.State, s.state)
		}
	}
	// Once aborted, the devices are free for another rollout.
	h.must(http.StatusCreated, "POST", "/api/v1/rollouts", appr, `{"model":"m","version":1}`, nil)
}

// reasonBody is an operator action's body.
func reasonBody(action string) any { return map[string]string{"reason": "test " + action} }
