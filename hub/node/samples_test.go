package node

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/textproto"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/driftline/driftline/hub/api"
	"github.com/driftline/driftline/hub/command"
	"github.com/driftline/driftline/hub/state"
	"github.com/driftline/driftline/hub/store"
	"github.com/driftline/driftline/internal/testhelp"
	"github.com/driftline/driftline/shared/kv"
	"github.com/driftline/driftline/shared/profile"
)

// sampleHub is a one-node hub (real badger, real Raft store, real API) whose API runs
// NewSampleProcessor and ProfileJSON, wired the way node.Start should wire them.
type sampleHub struct {
	url string
	tok string
}

func newSampleHub(t *testing.T) sampleHub {
	t.Helper()
	dir := t.TempDir()
	log := testhelp.Logger(t)
	db, err := kv.Open(filepath.Join(dir, "db"), kv.Server)
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(store.Config{DB: db, Dir: filepath.Join(dir, "raft"), NodeID: "s1", RaftBind: "127.0.0.1:0",
		HTTPAddr: "127.0.0.1:0", Bootstrap: true, Processor: state.Processor{}, Logger: log})
	if err != nil {
		db.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close(); db.Close() })
	testhelp.WaitFor(t, 10*time.Second, "leadership", st.IsLeader)
	tok := api.NewToken()
	env, _ := command.New(command.TypeTokenCreate, "admin", 0, "test",
		state.TokenCreate{ID: "admin", Name: "admin", Role: state.RoleAdmin, Hash: api.HashToken(tok)})
	if _, err := st.Apply(context.Background(), env); err != nil {
		t.Fatal(err)
	}
	srv := api.New(api.Config{Store: storeAdapter{st}, Reader: state.Reader{DB: db}, Logger: log,
		Samples: NewSampleProcessor(""), ProfileJSON: ProfileJSON})
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(hs.Close)
	h := sampleHub{url: hs.URL, tok: tok}
	h.do(t, http.MethodPost, "/api/v1/datasets", "application/json", strings.NewReader(`{"name":"sensors"}`), http.StatusCreated, nil)
	return h
}

func (h sampleHub) do(t *testing.T, method, path, ctype string, body io.Reader, want int, out any) []byte {
	t.Helper()
	req, _ := http.NewRequest(method, h.url+path, body)
	req.Header.Set("Authorization", "Bearer "+h.tok)
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	if out == nil && method == http.MethodGet {
		req.Header.Set("Accept", "application/octet-stream")
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if res.StatusCode != want {
		t.Fatalf("%s %s: got %d want %d: %s", method, path, res.StatusCode, want, b)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("decode %s: %v", b, err)
		}
	}
	return b
}

// push uploads a dataset version (contract, then the sample under filename) and returns the
// raw answer with its status.
func (h sampleHub) push(t *testing.T, contractDoc, filename, sample string, want int) map[string]any {
	t.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	cw, _ := mw.CreateFormField("contract")
	cw.Write([]byte(contractDoc))
	hdr := textproto.MIMEHeader{}
	hdr.Set("Content-Disposition", fmt.Sprintf(`form-data; name="sample"; filename=%q`, filename))
	sw, _ := mw.CreatePart(hdr)
	sw.Write([]byte(sample))
	mw.Close()
	var out map[string]any
	h.do(t, http.MethodPost, "/api/v1/datasets/sensors/versions", mw.FormDataContentType(), &buf, want, &out)
	return out
}

const sensorContract = `{
  "fields": [
    {"name": "ts", "type": "datetime"},
    {"name": "temp", "type": "number", "constraints": {"minimum": -40, "maximum": 125}},
    {"name": "site", "type": "string", "constraints": {"enum": ["a", "b", "c"]}},
    {"name": "ok", "type": "boolean"},
    {"name": "score", "type": "number", "x-driftline": {"role": "prediction"}}
  ]
}`

// sensorRow is row i of a deterministic sample: temp follows a smooth cycle, site cycles a, b, c.
func sensorRow(i int) (ts string, temp float64, site string, ok bool) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(i) * time.Minute)
	return t0.Format(time.RFC3339), 20 + 5*math.Sin(float64(i)/7) + float64(i%11)/10, string(rune('a' + i%3)), i%4 != 0
}

func sensorCSV(n int, badEvery int) string {
	var b strings.Builder
	b.WriteString("ts,temp,site,ok,score\n")
	for i := 0; i < n; i++ {
		ts, temp, site, ok := sensorRow(i)
		if badEvery > 0 && i%badEvery == badEvery-1 {
			temp = 500 // breaks maximum
		}
		fmt.Fprintf(&b, "%s,%g,%s,%t,0.5\n", ts, temp, site, ok)
	}
	return b.String()
}

func sensorJSONL(n int) string {
	var b strings.Builder
	for i := 0; i < n; i++ {
		ts, temp, site, ok := sensorRow(i)
		fmt.Fprintf(&b, `{"ts":%q,"temp":%g,"site":%q,"ok":%t}`+"\n", ts, temp, site, ok)
	}
	return b.String()
}

func TestDatasetPushProfiles(t *testing.T) {
	h := newSampleHub(t)
	cases := []struct {
		name, file, sample string
		rows, invalid      int64
	}{
		{"csv", "s.csv", sensorCSV(300, 50), 300, 6},
		{"jsonl", "s.jsonl", sensorJSONL(200), 200, 0},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out := h.push(t, sensorContract, tc.file, tc.sample, http.StatusCreated)
			if v := int(out["version"].(float64)); v != i+1 {
				t.Fatalf("version %d, want %d", v, i+1)
			}
			if r, bad := int64(out["sample_rows"].(float64)), int64(out["invalid_rows"].(float64)); r != tc.rows || bad != tc.invalid {
				t.Fatalf("rows %d invalid %d, want %d %d (notes %v)", r, bad, tc.rows, tc.invalid, out["notes"])
			}
			path := fmt.Sprintf("/api/v1/datasets/sensors/versions/%d/profile", i+1)
			bin := h.do(t, http.MethodGet, path, "", nil, http.StatusOK, nil)
			p, err := profile.Decode(bin)
			if err != nil {
				t.Fatalf("decode served profile: %v", err)
			}
			want := []profile.Column{{Name: "ts", Kind: profile.Numeric}, {Name: "temp", Kind: profile.Numeric},
				{Name: "site", Kind: profile.Categorical}, {Name: "ok", Kind: profile.Categorical}, {Name: "score", Kind: profile.Numeric}}
			if got := p.Columns(); fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("columns %v, want %v (every field, as agents profile)", got, want)
			}
			if p.Rows() != uint64(tc.rows-tc.invalid) {
				t.Fatalf("profile rows %d, want the %d valid rows", p.Rows(), tc.rows-tc.invalid)
			}
			site, _ := p.Column("site")
			if site.Frequent().Count("a")+site.Frequent().Count("b")+site.Frequent().Count("c") != p.Rows() {
				t.Fatalf("site counts do not add up to %d", p.Rows())
			}
			req, _ := http.NewRequest(http.MethodGet, h.url+path, nil)
			req.Header.Set("Authorization", "Bearer "+h.tok)
			req.Header.Set("Accept", "application/json")
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer res.Body.Close()
			var view ProfileView
			if err := json.NewDecoder(res.Body).Decode(&view); err != nil || res.StatusCode != http.StatusOK {
				t.Fatalf("json profile: %d %v", res.StatusCode, err)
			}
			temp := view.Columns[1]
			if view.Rows != p.Rows() || temp.Name != "temp" || temp.Max == nil || *temp.Max > 125 || temp.Quantiles["p50"] < 15 || temp.Quantiles["p50"] > 26 {
				t.Fatalf("json view %+v temp %+v", view, temp)
			}
			if len(view.Columns[2].Frequent) != 3 {
				t.Fatalf("site frequent items %+v", view.Columns[2].Frequent)
			}
		})
	}
}

func TestDatasetPushBadContract(t *testing.T) {
	h := newSampleHub(t)
	bad := `{"fields":[{"name":"a","type":"int"},{"name":"b","type":"number","constraints":{"minimum":3,"maximum":2}}]}`
	out := h.push(t, bad, "s.csv", "a,b\n1,2\n", http.StatusBadRequest)
	detail, _ := out["detail"].(string)
	for _, path := range []string{"fields[0].type", "fields[1].constraints.minimum"} {
		if !strings.Contains(detail, path) {
			t.Errorf("problem detail %q does not name %s", detail, path)
		}
	}
	if out["type"] != api.ProblemInvalid {
		t.Errorf("problem type %v", out["type"])
	}
}

// TestSampleCalibration: a contract asking for calibration gets thresholds for its scored
// features in the served profile (shared/reference tests the numbers).
func TestSampleCalibration(t *testing.T) {
	doc := strings.Replace(sensorContract, `"fields": [`, `"x-driftline": {"drift": {"calibrate": 100, "factor": 2}}, "fields": [`, 1)
	res, err := processSample([]byte(doc), strings.NewReader(sensorCSV(1050, 0)), "csv")
	if err != nil {
		t.Fatal(err)
	}
	got, err := profile.Decode(res.Profile)
	if err != nil {
		t.Fatal(err)
	}
	// Scored: temp, site, ok (ts is a datetime without a drift setting, score a prediction).
	for _, name := range []string{"temp", "site", "ok"} {
		c, _ := got.Column(name)
		if _, ok := c.Threshold(); !ok {
			t.Errorf("%s: no calibrated threshold; notes %v", name, res.Notes)
		}
	}
	for _, name := range []string{"ts", "score"} {
		if c, _ := got.Column(name); c != nil {
			if th, ok := c.Threshold(); ok {
				t.Errorf("%s is not scored but has threshold %+v", name, th)
			}
		}
	}
	t.Logf("notes: %v", res.Notes)
}

func TestSampleProcessorInputs(t *testing.T) {
	cases := []struct {
		name, contract, format, sample string
		wantErr                        error
		rows, invalid                  int64
		profiled                       bool
	}{
		{"csv ok", sensorContract, "csv", sensorCSV(20, 0), nil, 20, 0, true},
		{"json array", sensorContract, "jsonl", `[{"ts":"2026-01-01T00:00:00Z","temp":1,"site":"a","ok":true}]`, nil, 1, 0, true},
		{"unknown format", sensorContract, "parquet", "", api.ErrBadInput, 0, 0, false},
		{"contract not json", `{"fields":`, "csv", "a\n", api.ErrBadInput, 0, 0, false},
		{"malformed jsonl lines are invalid rows", sensorContract, "jsonl", "{\"temp\":1,\"site\":\"a\",\"ts\":\"2026-01-01T00:00:00Z\",\"ok\":true}\n{oops\n", nil, 2, 1, true},
		{"no feature fields", `{"fields":[{"name":"y","type":"number","x-driftline":{"role":"label"}}]}`, "csv", "y\n1\n2\n", nil, 2, 0, true},
		{"empty sample", sensorContract, "csv", "", api.ErrBadSample, 0, 0, false},
		{"no valid row", sensorContract, "jsonl", "{oops\n", api.ErrBadSample, 0, 0, false},
		{"calibration needs two windows", strings.Replace(sensorContract, `"fields": [`, `"x-driftline": {"drift": {"calibrate": 30}}, "fields": [`, 1), "csv", sensorCSV(50, 0), api.ErrBadSample, 0, 0, false},
		{"calibration on two windows", strings.Replace(sensorContract, `"fields": [`, `"x-driftline": {"drift": {"calibrate": 25}}, "fields": [`, 1), "csv", sensorCSV(50, 0), nil, 50, 0, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			res, err := processSample([]byte(tc.contract), strings.NewReader(tc.sample), tc.format)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("err %v, want %v", err, tc.wantErr)
				}
				t.Logf("error: %v", err)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if res.Rows != tc.rows || res.InvalidRows != tc.invalid || (len(res.Profile) > 0) != tc.profiled {
				t.Fatalf("result %+v", res)
			}
			if tc.profiled {
				if _, err := profile.Decode(res.Profile); err != nil {
					t.Fatal(err)
				}
			}
			t.Logf("notes: %v", res.Notes)
		})
	}
}

func TestProfileJSONRefusesGarbage(t *testing.T) {
	for _, b := range [][]byte{nil, {1}, []byte("not a profile"), {profile.EncodingVersion, 0x28, 0xb5, 0x2f, 0xfd}} {
		if _, err := ProfileJSON(b); err == nil {
			t.Errorf("ProfileJSON(%q) accepted garbage", b)
		}
	}
}

// TestContractDigestNamesServedBytes: a pretty-printed contract (with characters JSON encoding
// escapes) is served by digest exactly: the sha256 of GET .../contract equals contract_digest,
// which is what agents check after fetching it (they stalled when the two differed).
func TestContractDigestNamesServedBytes(t *testing.T) {
	h := newSampleHub(t)
	doc := strings.Replace(sensorContract, `"fields"`, `"description": "a <b> & c",`+"\n  "+`"fields"`, 1)
	out := h.push(t, doc, "s.csv", sensorCSV(50, 0), http.StatusCreated)
	v := int(out["version"].(float64))
	served := h.do(t, http.MethodGet, fmt.Sprintf("/api/v1/datasets/sensors/versions/%d/contract", v), "", nil, http.StatusOK, nil)
	sum := sha256.Sum256(served)
	if got, want := "sha256:"+hex.EncodeToString(sum[:]), out["contract_digest"]; got != want {
		t.Fatalf("served contract hashes to %s, version says %v", got, want)
	}
}

// TestDatasetPushRefusesSampleWithoutValidRows: a sample none of whose rows is valid (a
// malformed CSV, columns that match no field) would give a reference profile of nothing; the
// push is refused with a 400 naming the first problems, and no version is created. A sample
// with a low valid share is accepted with a warning, in the answer and in the version's notes.
func TestDatasetPushRefusesSampleWithoutValidRows(t *testing.T) {
	h := newSampleHub(t)
	for name, sample := range map[string]string{
		"malformed csv":           "ts,temp,site,ok,score\n\"2026-01-01T00:00:00Z,1\n",
		"columns match no field":  "when,reading\n2026-01-01T00:00:00Z,1\n2026-01-01T00:01:00Z,2\n",
		"every row breaks a rule": "ts,temp,site,ok,score\n2026-01-01T00:00:00Z,500,a,true,1\n2026-01-01T00:01:00Z,20,z,true,1\n",
	} {
		t.Run(name, func(t *testing.T) {
			out := h.push(t, sensorContract, "s.csv", sample, http.StatusBadRequest)
			detail, _ := out["detail"].(string)
			if out["type"] != api.ProblemInvalidSample || !strings.Contains(detail, "row 1") || !strings.Contains(detail, "valid") {
				t.Errorf("problem %v: want type %s and a detail naming the first problems", out, api.ProblemInvalidSample)
			}
		})
	}
	var page struct{ Items []map[string]any }
	h.do(t, http.MethodGet, "/api/v1/datasets/sensors/versions", "", nil, http.StatusOK, &page)
	if len(page.Items) != 0 {
		t.Fatalf("refused samples created versions: %v", page.Items)
	}
	// Half the rows break a rule: accepted, with a warning.
	out := h.push(t, sensorContract, "s.csv", sensorCSV(100, 2), http.StatusCreated)
	warnings, _ := out["warnings"].([]any)
	if len(warnings) != 1 || !strings.Contains(fmt.Sprint(warnings[0]), "50 of 100 rows") {
		t.Fatalf("warnings %v, want one naming 50 of 100 valid rows", out["warnings"])
	}
	var dv map[string]any
	h.do(t, http.MethodGet, "/api/v1/datasets/sensors/versions/1", "", nil, http.StatusOK, &dv)
	if notes := fmt.Sprint(dv["notes"]); !strings.Contains(notes, "warning: only 50 of 100 rows") {
		t.Fatalf("version notes %s carry no warning", notes)
	}
}
