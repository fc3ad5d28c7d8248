package chaos

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"mime/multipart"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/driftline/driftline/agent/agenttest"
)

// The workload's objects: one model with registered versions, tags and aliases on it, devices
// with a label. Each tag, alias and device label is one register for porcupine.
const (
	model    = "chaos"
	tagKeys  = 8
	aliases  = 2
	devices  = 3
	monoTag  = "mono"
	labelKey = "l"
	// datasetName is the dataset the approved version was trained on; datasetContract its
	// contract, the shape of the agents' scenario (the id and time it adds are labels).
	datasetName     = "chaos-sensors"
	datasetContract = `{"fields":[{"name":"device_id","type":"string","x-driftline":{"role":"label"}},{"name":"ts","type":"integer","x-driftline":{"role":"label"}},{"name":"x","type":"number","constraints":{"required":true}}]}`
)

// Input and Output are one operation of the porcupine history.
type Input struct {
	Write bool
	Key   string // "tag/t0", "alias/a0", "label/d0"
	Value string
}

type Output struct {
	Value string
}

// Model is a register per key; "" before any write.
var Model = porcupine.Model{
	Partition: func(h []porcupine.Operation) [][]porcupine.Operation {
		by := map[string][]porcupine.Operation{}
		var keys []string
		for _, op := range h {
			k := op.Input.(Input).Key
			if _, ok := by[k]; !ok {
				keys = append(keys, k)
			}
			by[k] = append(by[k], op)
		}
		out := make([][]porcupine.Operation, 0, len(keys))
		for _, k := range keys {
			out = append(out, by[k])
		}
		return out
	},
	Init: func() any { return "" },
	Step: func(st, in, out any) (bool, any) {
		i := in.(Input)
		if i.Write {
			return true, i.Value
		}
		return out.(Output).Value == st.(string), st
	},
	DescribeOperation: func(in, out any) string {
		i := in.(Input)
		if i.Write {
			return fmt.Sprintf("%s := %q", i.Key, i.Value)
		}
		return fmt.Sprintf("%s -> %q", i.Key, out.(Output).Value)
	},
}

// History is what the clients did.
type History struct {
	mu    sync.Mutex
	start time.Time
	Ops   []porcupine.Operation
	// Versions are the model versions whose registration was acknowledged.
	Versions []int
	// Mono is, per node, the values of the monotonic tag its default reads returned, in order.
	Mono map[string][]int
	// Unknown counts writes whose outcome is unknown (timeouts, 5xx, dropped connections).
	Unknown int
}

func (h *History) now() int64 { return int64(time.Since(h.start)) }

func (h *History) add(op porcupine.Operation) {
	h.mu.Lock()
	h.Ops = append(h.Ops, op)
	h.mu.Unlock()
}

// Setup creates the workload's model (two versions), devices and first values.
func Setup(c *Cluster) error {
	lead := c.Leader()
	if lead == nil {
		return fmt.Errorf("no leader")
	}
	if code, b := c.Do(lead, http.MethodPost, "/api/v1/models", map[string]string{"name": model}); code != http.StatusCreated {
		return fmt.Errorf("create model: %d %s", code, b)
	}
	// The agents' data contract and reference: a dataset version the approved version was
	// trained on (the agents then validate and report what their scenario feeds them).
	if code, b := c.Do(lead, http.MethodPost, "/api/v1/datasets", map[string]string{"name": datasetName}); code != http.StatusCreated {
		return fmt.Errorf("create dataset: %d %s", code, b)
	}
	var sample strings.Builder
	sample.WriteString("device_id,ts,x\n")
	for i := 0; i < 200; i++ {
		fmt.Fprintf(&sample, "d,%d,%.3f\n", i, 1+0.1*math.Sin(float64(i)))
	}
	if code, b := c.multipart(lead, "/api/v1/datasets/"+datasetName+"/versions", map[string]string{"contract": datasetContract}, "sample", "sample.csv", []byte(sample.String())); code != http.StatusCreated {
		return fmt.Errorf("register dataset version: %d %s", code, b)
	}
	// Version 1 (the approved one) is 1 MiB, so an agent's pull of it takes a moment a kill
	// can land in; version 2 is tiny.
	big := agenttest.RandomBytes(1, 1<<20)
	meta := fmt.Sprintf(`{"format":"test","trained_on":[{"dataset":%q,"version":1}]}`, datasetName)
	if code, b := c.multipart(lead, "/api/v1/models/"+model+"/versions", map[string]string{"metadata": meta}, "artifact", "m.bin", big); code != http.StatusCreated {
		return fmt.Errorf("register version: %d %s", code, b)
	}
	if code, b := c.upload(lead); code != http.StatusCreated {
		return fmt.Errorf("register version: %d %s", code, b)
	}
	for d := 0; d < devices; d++ {
		if code, b := c.Do(lead, http.MethodPost, "/api/v1/devices", map[string]any{"id": fmt.Sprintf("d%d", d)}); code != http.StatusCreated {
			return fmt.Errorf("create device: %d %s", code, b)
		}
	}
	return nil
}

func (c *Cluster) upload(nd *Node) (int, []byte) {
	return c.multipart(nd, "/api/v1/models/"+model+"/versions", nil, "artifact", "m.bin", fmt.Appendf(nil, "a tiny model %d", time.Now().UnixNano()))
}

// multipart POSTs fields and one file part to path on nd.
func (c *Cluster) multipart(nd *Node, path string, fields map[string]string, fileField, fileName string, file []byte) (int, []byte) {
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	for k, v := range fields {
		_ = mw.WriteField(k, v)
	}
	fw, _ := mw.CreateFormFile(fileField, fileName)
	_, _ = fw.Write(file)
	mw.Close()
	req, _ := http.NewRequest(http.MethodPost, nd.URL()+path, &buf)
	req.Header.Set("Authorization", "Bearer "+c.Token)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	res, err := c.httpClient().Do(req)
	if err != nil {
		return 0, []byte(err.Error())
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, b
}

// outcome sorts an answer to a write: applied, not applied, or unknown.
func outcome(code int) (applied, unknown bool) {
	switch {
	case code >= 200 && code < 300:
		return true, false
	case code == Refused:
		return false, false // never sent
	case code >= 400 && code < 500 && code != http.StatusRequestTimeout && code != http.StatusTooManyRequests:
		return false, false // refused before it was proposed
	}
	return false, true // no answer, a timeout or a 5xx: it may have been applied, or may be later
}

// Client runs operations through random nodes until stop is closed.
func (c *Cluster) Client(id int, seed uint64, h *History, stop <-chan struct{}) {
	r := rand.New(rand.NewPCG(seed, uint64(id)))
	seq := 0
	for {
		select {
		case <-stop:
			return
		default:
		}
		// Think time: a history porcupine can check in seconds (its search grows fast with
		// concurrent operations of unknown outcome on one key).
		select {
		case <-stop:
			return
		case <-time.After(time.Duration(10+r.IntN(40)) * time.Millisecond):
		}
		nd := c.Nodes[r.IntN(len(c.Nodes))]
		seq++
		in, call := c.pickOp(r, nd, fmt.Sprintf("c%d-%d", id, seq))
		if call == nil {
			c.registerVersion(nd, h)
			continue
		}
		h.record(id, in, call)
	}
}

// pickOp draws the next operation on nd: a register write or strong read (of a tag, an alias or
// a device label; val is the value a write writes) and the call that performs it, returning the
// status and the value read. A nil call means: register a model version (not a register).
func (c *Cluster) pickOp(r *rand.Rand, nd *Node, val string) (Input, func() (int, string)) {
	switch p := r.IntN(100); {
	case p < 25:
		k := r.IntN(tagKeys)
		return Input{Write: true, Key: fmt.Sprintf("tag/t%d", k), Value: val}, func() (int, string) {
			code, _ := c.Do(nd, http.MethodPut, "/api/v1/models/"+model+"/versions/1/tags", map[string]any{"tags": map[string]string{fmt.Sprintf("t%d", k): val}})
			return code, ""
		}
	case p < 45:
		k := r.IntN(tagKeys)
		return Input{Key: fmt.Sprintf("tag/t%d", k)}, func() (int, string) { return c.readTag(nd, fmt.Sprintf("t%d", k), true) }
	case p < 55:
		k, v := r.IntN(aliases), 1+r.IntN(2)
		return Input{Write: true, Key: fmt.Sprintf("alias/a%d", k), Value: strconv.Itoa(v)}, func() (int, string) {
			code, _ := c.Do(nd, http.MethodPut, fmt.Sprintf("/api/v1/models/%s/aliases/a%d", model, k), map[string]any{"version": v})
			return code, ""
		}
	case p < 65:
		k := r.IntN(aliases)
		return Input{Key: fmt.Sprintf("alias/a%d", k)}, func() (int, string) { return c.readAlias(nd, k) }
	case p < 80:
		k := r.IntN(devices)
		return Input{Write: true, Key: fmt.Sprintf("label/d%d", k), Value: val}, func() (int, string) {
			code, _ := c.Do(nd, http.MethodPatch, fmt.Sprintf("/api/v1/devices/d%d", k), map[string]any{"labels": map[string]string{labelKey: val}})
			return code, ""
		}
	case p < 95:
		k := r.IntN(devices)
		return Input{Key: fmt.Sprintf("label/d%d", k)}, func() (int, string) { return c.readLabel(nd, k) }
	default:
		return Input{}, nil
	}
}

// readAlias reads alias a<k> with a strong read ("" when it is not set).
func (c *Cluster) readAlias(nd *Node, k int) (int, string) {
	code, b := c.Do(nd, http.MethodGet, fmt.Sprintf("/api/v1/models/%s/aliases/a%d?consistency=strong", model, k), nil)
	if code == http.StatusNotFound {
		return http.StatusOK, ""
	}
	var a struct {
		Version int `json:"version"`
	}
	if code == http.StatusOK && json.Unmarshal(b, &a) == nil {
		return code, strconv.Itoa(a.Version)
	}
	return code, ""
}

// readLabel reads device d<k>'s label with a strong read.
func (c *Cluster) readLabel(nd *Node, k int) (int, string) {
	code, b := c.Do(nd, http.MethodGet, fmt.Sprintf("/api/v1/devices/d%d?consistency=strong", k), nil)
	var d struct {
		Labels map[string]string `json:"labels"`
	}
	if code == http.StatusOK && json.Unmarshal(b, &d) == nil {
		return code, d.Labels[labelKey]
	}
	return code, ""
}

// registerVersion registers a model version through nd and records it when acknowledged.
func (c *Cluster) registerVersion(nd *Node, h *History) {
	code, b := c.upload(nd)
	if code != http.StatusCreated {
		return
	}
	var v struct {
		Version int `json:"version"`
	}
	if json.Unmarshal(b, &v) == nil {
		h.mu.Lock()
		h.Versions = append(h.Versions, v.Version)
		h.mu.Unlock()
	}
}

// record performs call for client id and adds the operation to the history: a write whose
// outcome is unknown as one that may take effect at any later time, a write not applied and a
// failed read not at all.
func (h *History) record(id int, in Input, call func() (int, string)) {
	op := porcupine.Operation{ClientId: id, Input: in, Call: h.now()}
	code, got := call()
	op.Return = h.now()
	if in.Write {
		applied, unknown := outcome(code)
		switch {
		case unknown:
			op.Return = math.MaxInt64 // it may take effect at any later time
			h.mu.Lock()
			h.Unknown++
			h.mu.Unlock()
		case !applied:
			return
		}
		op.Output = Output{}
	} else {
		if code != http.StatusOK {
			return // a failed read tells nothing
		}
		op.Output = Output{Value: got}
	}
	h.add(op)
}

func (c *Cluster) readTag(nd *Node, key string, strong bool) (int, string) {
	path := "/api/v1/models/" + model + "/versions/1"
	if strong {
		path += "?consistency=strong"
	}
	code, b := c.Do(nd, http.MethodGet, path, nil)
	var mv struct {
		Tags map[string]string `json:"tags"`
	}
	if code == http.StatusOK && json.Unmarshal(b, &mv) == nil {
		return code, mv.Tags[key]
	}
	return code, ""
}

// MonoWriter sets the monotonic tag to 1, 2, 3, ... through random nodes until stop.
func (c *Cluster) MonoWriter(seed uint64, stop <-chan struct{}) {
	r := rand.New(rand.NewPCG(seed, 99))
	for n := 1; ; n++ {
		select {
		case <-stop:
			return
		default:
		}
		nd := c.Nodes[r.IntN(len(c.Nodes))]
		c.Do(nd, http.MethodPut, "/api/v1/models/"+model+"/versions/1/tags", map[string]any{"tags": map[string]string{monoTag: strconv.Itoa(n)}})
		time.Sleep(20 * time.Millisecond)
	}
}

// MonoReader reads the monotonic tag from nd with default (local) reads until stop.
func (c *Cluster) MonoReader(nd *Node, h *History, stop <-chan struct{}) {
	for {
		select {
		case <-stop:
			return
		case <-time.After(20 * time.Millisecond):
		}
		code, v := c.readTag(nd, monoTag, false)
		if code != http.StatusOK {
			continue
		}
		n, _ := strconv.Atoi(v)
		h.mu.Lock()
		if h.Mono == nil {
			h.Mono = map[string][]int{}
		}
		h.Mono[nd.ID] = append(h.Mono[nd.ID], n)
		h.mu.Unlock()
	}
}

// FinalReads adds a strong read of every register to the history, after the faults.
func (c *Cluster) FinalReads(h *History, nd *Node) {
	read := func(key string, f func() (int, string)) {
		call := h.now()
		code, v := f()
		if code == http.StatusOK {
			h.add(porcupine.Operation{ClientId: 0, Input: Input{Key: key}, Call: call, Output: Output{Value: v}, Return: h.now()})
		}
	}
	for k := 0; k < tagKeys; k++ {
		key := fmt.Sprintf("t%d", k)
		read("tag/"+key, func() (int, string) { return c.readTag(nd, key, true) })
	}
	for k := 0; k < devices; k++ {
		k := k
		read(fmt.Sprintf("label/d%d", k), func() (int, string) {
			code, b := c.Do(nd, http.MethodGet, fmt.Sprintf("/api/v1/devices/d%d?consistency=strong", k), nil)
			var d struct {
				Labels map[string]string `json:"labels"`
			}
			if code == http.StatusOK && json.Unmarshal(b, &d) == nil {
				return code, d.Labels[labelKey]
			}
			return code, ""
		})
	}
}
