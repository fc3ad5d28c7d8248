package demo

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/driftline/driftline/hub/state"
	"github.com/driftline/driftline/hub/webhook"
)

// receiver is the demo's webhook receiver: what a CI system or an orchestrator would run. It
// checks each delivery's signature and timestamp, drops repeated event ids, and narrates.
type receiver struct {
	srv    *http.Server
	ln     net.Listener
	secret string
	narr   *narrator

	mu     sync.Mutex
	seen   map[string]bool
	events []string // "TYPE SUBJECT", in arrival order
}

// startReceiver listens on a free local port. narr may be set later (before events arrive).
func startReceiver() (*receiver, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		ln.Close()
		return nil, err
	}
	r := &receiver{ln: ln, secret: "whsec_demo_" + hex.EncodeToString(b), seen: map[string]bool{}}
	r.srv = &http.Server{Handler: http.HandlerFunc(r.handle), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = r.srv.Serve(ln) }()
	return r, nil
}

// URL is where the hub delivers.
func (r *receiver) URL() string { return "http://" + r.ln.Addr().String() + "/driftline" }

func (r *receiver) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = r.srv.Shutdown(ctx)
}

func (r *receiver) handle(w http.ResponseWriter, req *http.Request) {
	body, err := io.ReadAll(io.LimitReader(req.Body, 1<<20))
	if err != nil {
		http.Error(w, "read", http.StatusBadRequest)
		return
	}
	if err := webhook.Verify(r.secret, req.Header.Get(webhook.HeaderSignature), body, time.Now(), webhook.DefaultTolerance); err != nil {
		http.Error(w, err.Error(), http.StatusUnauthorized)
		return
	}
	var ce webhook.CloudEvent
	if err := json.Unmarshal(body, &ce); err != nil {
		http.Error(w, "not a CloudEvent", http.StatusBadRequest)
		return
	}
	w.WriteHeader(http.StatusNoContent)
	r.mu.Lock()
	dup := r.seen[ce.ID]
	r.seen[ce.ID] = true
	if !dup {
		r.events = append(r.events, ce.Type+" "+ce.Subject)
	}
	narr := r.narr
	r.mu.Unlock()
	if dup || narr == nil {
		return
	}
	narr.say("webhook received %s %s (CloudEvent %s, signature verified)%s", ce.Type, ce.Subject, ce.ID, describe(ce))
}

// describe says what a CI system would read from the event's data.
func describe(ce webhook.CloudEvent) string {
	switch ce.Type {
	case state.EventDatasetCandidate, state.EventDatasetVersion:
		var re webhook.RunEvent
		if json.Unmarshal(ce.Data, &re) != nil || len(re.Outputs) == 0 {
			return ""
		}
		in := "none"
		if len(re.Inputs) > 0 {
			in = re.Inputs[0].Namespace + "/" + re.Inputs[0].Name
		}
		return fmt.Sprintf(": OpenLineage RunEvent %s of job %s/%s, input %s, output %s/%s: ready to train on",
			re.EventType, re.Job.Namespace, re.Job.Name, in, re.Outputs[0].Namespace, re.Outputs[0].Name)
	case state.EventGateDecision:
		var g state.GateEventData
		if json.Unmarshal(ce.Data, &g) == nil {
			return fmt.Sprintf(": %s %s -> %s (%s)", g.Decision, g.Action, g.State, g.Reason)
		}
	case state.EventDriftDetected, state.EventDriftCleared:
		var d state.DriftEventData
		if json.Unmarshal(ce.Data, &d) == nil {
			return fmt.Sprintf(": %s v%d drift share %.2f", d.Model, d.Version, d.DriftShare)
		}
	}
	return ""
}

// received returns the events in arrival order.
func (r *receiver) received() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.events...)
}
