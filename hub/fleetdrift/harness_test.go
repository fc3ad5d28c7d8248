package fleetdrift_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"mime/multipart"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/driftline/driftline/shared/drift"

	"github.com/driftline/driftline/hub/command"
	"github.com/driftline/driftline/hub/node"
	"github.com/driftline/driftline/hub/node/nodetest"
	"github.com/driftline/driftline/hub/state"
	"github.com/driftline/driftline/shared/artifact"
	"github.com/driftline/driftline/shared/contract"
	"github.com/driftline/driftline/shared/profile"
)

// testContract has one numeric and one categorical feature, and a label that is not profiled.
const testContract = `{"fields": [
  {"name": "temp", "type": "number"},
  {"name": "site", "type": "string"},
  {"name": "y", "type": "integer", "x-driftline": {"role": "label"}}
]}`

// hub is a real one-node hub (no MQTT) used as the drift service's registry.
type hub struct {
	n   *node.Node
	tok string
}

// startHub starts a one-node hub (nodetest.Start), with its embedded broker when mqtt is set.
func startHub(t testing.TB, mqtt bool) hub {
	t.Helper()
	var opts []nodetest.Option
	if !mqtt {
		opts = append(opts, nodetest.NoMQTT())
	}
	nh := nodetest.Start(t, opts...)
	return hub{n: nh.Node, tok: nh.Token}
}

func (h hub) call(t testing.TB, method, path string, body any, want int, out any) {
	t.Helper()
	var r io.Reader
	ctype := ""
	switch b := body.(type) {
	case nil:
	case *multipart.Writer:
		t.Fatal("use callMultipart")
	default:
		js, _ := json.Marshal(b)
		r, ctype = bytes.NewReader(js), "application/json"
	}
	h.do(t, method, path, ctype, r, want, out)
}

func (h hub) do(t testing.TB, method, path, ctype string, body io.Reader, want int, out any) {
	t.Helper()
	req, _ := http.NewRequest(method, h.n.URL()+path, body)
	req.Header.Set("Authorization", "Bearer "+h.tok)
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
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
}

func (h hub) apply(t testing.TB, typ command.Type, body any) {
	t.Helper()
	env, err := command.New(typ, "", 0, "test", body)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.n.Store().Apply(context.Background(), env); err != nil {
		t.Fatal(err)
	}
}

// pushDataset creates dataset name and one version whose reference profile the hub's own sample
// processor computes from sample (CSV). The version is stored by command, so the test does not
// depend on how the node wires its API.
func (h hub) pushDataset(t testing.TB, name, doc, sample string) {
	t.Helper()
	h.call(t, http.MethodPost, "/api/v1/datasets", map[string]string{"name": name}, http.StatusCreated, nil)
	res, err := node.NewSampleProcessor("")([]byte(doc), strings.NewReader(sample), "csv")
	if err != nil {
		t.Fatal(err)
	}
	h.apply(t, command.TypeDatasetVersionCreate, state.DatasetVersionCreate{Dataset: name, Contract: json.RawMessage(doc),
		ContractHash: artifact.DigestOf([]byte(doc)), Profile: res.Profile, ProfileDigest: artifact.DigestOf(res.Profile),
		SampleSHA256: artifact.DigestOf([]byte(sample)), SampleRows: res.Rows})
}

// pushModel registers a model version trained on dataset@1 and returns its version.
func (h hub) pushModel(t testing.TB, model, dataset string) int {
	t.Helper()
	h.call(t, http.MethodPost, "/api/v1/models", map[string]string{"name": model}, http.StatusCreated, nil)
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	mw.WriteField("metadata", fmt.Sprintf(`{"format":"onnx","trained_on":[{"dataset":%q,"version":1}]}`, dataset))
	fw, _ := mw.CreateFormFile("artifact", "model.bin")
	fw.Write([]byte("weights of " + model))
	mw.Close()
	var out struct {
		Version int `json:"version"`
	}
	h.do(t, http.MethodPost, "/api/v1/models/"+model+"/versions", mw.FormDataContentType(), &buf, http.StatusCreated, &out)
	return out.Version
}

// device enrolls a device and, unless version is 0, reports model@version active on it.
func (h hub) device(t testing.TB, id, model string, version int) (token string) {
	t.Helper()
	var out struct {
		Token string `json:"token"`
	}
	h.call(t, http.MethodPost, "/api/v1/devices", map[string]any{"id": id}, http.StatusCreated, &out)
	if version > 0 {
		v := version
		h.apply(t, command.TypeDeviceTelemetry, state.DeviceTelemetry{Devices: []state.DeviceObservation{{ID: id,
			Reported: &state.Reported{Rev: 1, Models: map[string]state.ReportedModel{model: {Active: &v, State: "active"}}}}}})
	}
	return out.Token
}

// referenceCSV is n rows of temp ~ N(20, 2) and site uniform over a, b, c.
func referenceCSV(n int, seed uint64) string {
	r := rand.New(rand.NewPCG(seed, 1))
	var b strings.Builder
	b.WriteString("temp,site,y\n")
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, "%.4f,%c,%d\n", 20+2*r.NormFloat64(), 'a'+r.IntN(3), i%2)
	}
	return b.String()
}

// windowProfile is an agent's window profile of n rows: temp ~ N(mean, 2), site uniform over
// the given categories.
func windowProfile(t testing.TB, n int, mean float64, sites string, seed uint64) []byte {
	t.Helper()
	schema, err := contract.Parse([]byte(testContract))
	if err != nil {
		t.Fatal(err)
	}
	cols := drift.Columns(schema)
	p, err := profile.New(cols)
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(seed, 2))
	for i := 0; i < n; i++ {
		row := []contract.Value{{Kind: contract.KindNumber, Num: mean + 2*r.NormFloat64()},
			{Kind: contract.KindString, Str: string(sites[r.IntN(len(sites))])}, {Kind: contract.KindNull}}
		if err := p.Add(row); err != nil {
			t.Fatal(err)
		}
	}
	return p.Encode()
}

// clock is a settable test clock.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// published collects what the service publishes.
type published struct {
	mu   sync.Mutex
	msgs []struct {
		topic   string
		payload []byte
	}
}

func (p *published) Publish(topic string, payload []byte) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.msgs = append(p.msgs, struct {
		topic   string
		payload []byte
	}{topic, payload})
	return nil
}

func (p *published) all() []struct {
	topic   string
	payload []byte
} {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append(p.msgs[:0:0], p.msgs...)
}
