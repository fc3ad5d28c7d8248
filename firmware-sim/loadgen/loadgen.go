// Package loadgen speaks the device side of the protocol (SPEC section 3) for many simulated
// devices over a few MQTT connections, for hub-side load tests past the number of real agents
// one machine can run (issue 18): retained status and reported states, heartbeats at the
// agents' interval, numbered validation reports once a model runs (acknowledged by the hub),
// desired states acted on as an agent does (manifest fetched per device, chunks asked for on the
// model's shared topic, asked again per device only when the agent would: after
// wire.SharedDeadline of the request timeout without a shared frame bringing the device
// anything, the policy of a standalone agent's fetcher; then activating and active reported),
// with the payloads verified: every frame against its digest, the
// manifest against the desired digest, and the desired signature and model approval of one
// device in VerifyEvery against the hub's root of trust.
//
// What it does not do, and a real fleet does: one MQTT connection per device (the broker's
// connection count, keepalives and its fan-out of the shared chunk topic to every device of a
// wave: here one subscription receives each frame once for all devices), running models, and
// a will message per device.
package loadgen

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/driftline/driftline/shared/artifact"
	"github.com/driftline/driftline/shared/trust"
	"github.com/driftline/driftline/shared/wire"
)

// ErrConfig is a bad Config.
var ErrConfig = errors.New("loadgen: bad config")

// Conn is the credentials of one MQTT connection.
type Conn struct {
	User, Password string
}

// Config is one load run.
type Config struct {
	// Broker is the MQTT URL devices connect to (tcp://host:port).
	Broker string
	// Conns are the connections: the first subscribes (desired, ack and chunk topics of every
	// device, the shared chunk topics), the others publish, device i on Conns[1+i%(len-1)], so
	// each device's messages stay in order. At least two.
	Conns []Conn
	// Devices are the device ids (enrolled on the hub).
	Devices []string
	// Topics are the hub's topics (default wire.Default()).
	Topics wire.Topics
	// Heartbeat is the heartbeat interval (default 10 s, the agent's); Window the interval of
	// each running device's numbered validation report (default 60 s, the agent's; negative:
	// none).
	Heartbeat, Window time.Duration
	// Root is the hub's root of trust (root.json); required.
	Root []byte
	// VerifyEvery: the desired signature and model approval of one device in VerifyEvery are
	// verified (default 100; 1 verifies every device).
	VerifyEvery int
	// FetchTimeout is the devices' request timeout (default wire.DefaultFetchTimeout, the
	// agent's): a request on the device's own topic (the manifest, a retry) is asked again after
	// it, one naming the shared topic after wire.SharedDeadline of it, counted from the request
	// or from the last shared frame that brought the device a chunk, as the agent does.
	FetchTimeout time.Duration
	// InFlight bounds each publishing connection's unacknowledged QoS 1 messages (default 512).
	InFlight int
	Logger   *slog.Logger
}

// Stats are the run's counters so far.
type Stats struct {
	// Published counts messages sent, by topic kind name; PublishErrors those the broker
	// did not take.
	Published     map[string]int64
	PublishErrors int64
	// Desired counts desired messages received; Verified those whose signature and approvals
	// were checked; BadPayloads frames or messages that failed a check (any is a failure).
	Desired, Verified, BadPayloads int64
	// SharedFrames and DeviceFrames count chunk frames received on shared and device topics;
	// Retries the fetch requests sent again per device after a timeout, ChunkRetries those of
	// them for chunks (not the manifest).
	SharedFrames, DeviceFrames, Retries, ChunkRetries int64
	// Acks counts report acknowledgements received.
	Acks int64
	// Running counts devices running each "NAME@VERSION"; Pulling those fetching.
	Running map[string]int
	Pulling int
	// LastActive is when the last device reported active; LastActiveBy the same per rollout
	// (the desired state's rollout id).
	LastActive   time.Time
	LastActiveBy map[string]time.Time
}

// device is one simulated device. Its fields are guarded by Sim.mu.
type device struct {
	idx int
	id  string
	// rev is the last desired rev acted on.
	rev uint64
	// model, active, previous and rollout are what the device runs (one model).
	model            string
	active, previous int
	rollout          string
	// want is the desired state being acted on (nil: none).
	want *pullWant
	// seq, acked number the validation reports; windows counts them.
	seq, acked  uint64
	windowStart int64
}

// pullWant is one device's pull of one model version.
type pullWant struct {
	rev uint64
	m   wire.DesiredModel
	g   *pull
	sub string // shared subscription id
	// deadline is when what the device still misses is asked again on its own topic; shared
	// says the outstanding request named the shared topic (its deadline moves on with every
	// shared frame that brings the device a chunk).
	deadline time.Time
	shared   bool
	listen   time.Time // since when the device counts as listening on the shared topic
	step     int       // 0: manifest, 1: chunks
	have     []bool
	left     int
}

// pull is what the devices fetching one model version share: the verified manifest and when
// each chunk last arrived on the shared topic.
type pull struct {
	key      string
	manifest *artifact.Manifest
	index    map[string]int // chunk digest -> position
	waiting  map[int]*device
}

// Sim runs the devices.
type Sim struct {
	cfg    Config
	log    *slog.Logger
	ring   artifact.KeyRing
	epoch  uint64
	start  time.Time
	sub    paho.Client
	pubs   []*publisher
	byID   map[string]int
	devs   []*device
	mu     sync.Mutex
	pulls  map[string]*pull
	objs   map[string]*wire.Object // partial multi-part objects by request id + digest
	stats  Stats
	quit   chan struct{}
	last   atomic.Int64
	lastBy map[string]time.Time // guarded by mu
	counts struct {
		desired, verified, bad, shared, devFrames, retries, chunkRetries, acks atomic.Int64
	}
}

// New checks cfg and prepares the devices.
func New(cfg Config) (*Sim, error) {
	if cfg.Broker == "" || len(cfg.Conns) < 2 || len(cfg.Devices) == 0 || len(cfg.Root) == 0 {
		return nil, fmt.Errorf("%w: a broker, at least two connections, devices and the root of trust are required", ErrConfig)
	}
	if cfg.Topics.Prefix() == "" {
		cfg.Topics = wire.Default()
	}
	if cfg.Heartbeat == 0 {
		cfg.Heartbeat = 10 * time.Second
	}
	if cfg.Window == 0 {
		cfg.Window = time.Minute
	}
	if cfg.VerifyEvery <= 0 {
		cfg.VerifyEvery = 100
	}
	if cfg.FetchTimeout <= 0 {
		cfg.FetchTimeout = wire.DefaultFetchTimeout
	}
	if cfg.InFlight <= 0 {
		cfg.InFlight = 512
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	root, err := trust.Parse(cfg.Root)
	if err != nil {
		return nil, fmt.Errorf("%w: root of trust: %v", ErrConfig, err)
	}
	s := &Sim{cfg: cfg, log: cfg.Logger, ring: root.Online(), epoch: uint64(time.Now().UnixMilli()), byID: make(map[string]int, len(cfg.Devices)),
		devs: make([]*device, len(cfg.Devices)), pulls: map[string]*pull{}, objs: map[string]*wire.Object{}, quit: make(chan struct{}), lastBy: map[string]time.Time{}}
	s.stats.Published = map[string]int64{}
	for i, id := range cfg.Devices {
		if err := wire.ValidateName("device id", id); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrConfig, err)
		}
		if _, dup := s.byID[id]; dup {
			return nil, fmt.Errorf("%w: device %s listed twice", ErrConfig, id)
		}
		s.byID[id] = i
		s.devs[i] = &device{idx: i, id: id}
	}
	return s, nil
}

// Run connects, announces every device (status online, reported), and runs them until ctx
// ends.
func (s *Sim) Run(ctx context.Context) error {
	s.start = time.Now()
	defer func() {
		if s.sub != nil {
			s.sub.Disconnect(250)
		}
		close(s.quit) // after the subscriber: no handler sends any more
		for _, p := range s.pubs {
			<-p.done
		}
	}()
	for i, c := range s.cfg.Conns[1:] {
		cl, err := s.connect(c, strconv.Itoa(i+1), false)
		if err != nil {
			return err
		}
		p := newPublisher(cl, s.cfg.InFlight, s.quit)
		s.pubs = append(s.pubs, p)
		go p.run()
	}
	var err error
	if s.sub, err = s.connect(s.cfg.Conns[0], "0", true); err != nil {
		return err
	}
	now := time.Now().UnixMilli()
	for _, d := range s.devs {
		s.send(d, wire.KindStatus, s.cfg.Topics.Status(d.id), wire.Status{Header: wire.Header{DeviceID: d.id, TS: now}, Online: true,
			AgentVersion: "loadgen", StartedTS: now, Reason: wire.ReasonConnect})
		s.mu.Lock()
		r := s.reportedLocked(d, "")
		s.mu.Unlock()
		s.send(d, wire.KindReported, s.cfg.Topics.Reported(d.id), r)
		d.windowStart = now
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); s.periodic(ctx) }()
	go func() { defer wg.Done(); s.retries(ctx) }()
	wg.Wait()
	return nil
}

// connect opens one connection; the subscriber subscribes on every (re)connect.
func (s *Sim) connect(c Conn, n string, subscriber bool) (paho.Client, error) {
	o := paho.NewClientOptions().AddBroker(s.cfg.Broker).SetClientID("loadgen-" + n + "-" + c.User).
		SetUsername(c.User).SetPassword(c.Password).SetCleanSession(true).SetAutoReconnect(true).
		SetKeepAlive(30 * time.Second).SetConnectTimeout(10 * time.Second).SetOrderMatters(true).SetWriteTimeout(30 * time.Second)
	if subscriber {
		t := s.cfg.Topics
		filters := map[string]byte{t.AllDevices(wire.KindDesired): 1, t.AllDevices(wire.KindAck): 1, t.AllDevices(wire.KindChunk): 1,
			t.Prefix() + "/model/+/chunk": 1}
		o.SetOnConnectHandler(func(cl paho.Client) {
			tok := cl.SubscribeMultiple(filters, s.handle)
			if tok.WaitTimeout(30*time.Second) && tok.Error() != nil {
				s.log.Error("loadgen: subscribe", "err", tok.Error())
			}
		})
	}
	cl := paho.NewClient(o)
	tok := cl.Connect()
	if !tok.WaitTimeout(15*time.Second) || tok.Error() != nil {
		return nil, fmt.Errorf("loadgen: connect %s as %s: %v", s.cfg.Broker, c.User, tok.Error())
	}
	return cl, nil
}

// send encodes p and queues it on d's connection with its kind's QoS and retain flag.
func (s *Sim) send(d *device, k wire.Kind, topic string, p wire.Payload) {
	b, err := wire.Encode(p)
	if err != nil {
		s.log.Error("loadgen: encode", "kind", k.String(), "device", d.id, "err", err)
		return
	}
	select {
	case s.pubs[d.idx%len(s.pubs)].ch <- msg{topic: topic, payload: b, qos: k.QoS(), retain: k.Retained(), kind: k.String()}:
	case <-s.quit:
	}
}

// reportedLocked is d's reported state; with state set, the pull in progress is in it.
func (s *Sim) reportedLocked(d *device, st wire.State) wire.Reported {
	r := wire.Reported{Header: wire.Header{DeviceID: d.id, TS: time.Now().UnixMilli()}, Rev: d.rev, AgentVersion: "loadgen",
		Models: map[string]wire.ReportedModel{}}
	if w := d.want; w != nil && st != "" {
		rm := wire.ReportedModel{Target: w.m.Version, State: st, RolloutID: w.m.RolloutID, Since: r.TS}
		if d.model == w.m.Name && d.active > 0 {
			a := d.active
			rm.Active = &a
		}
		r.Models[w.m.Name] = rm
		return r
	}
	if d.model != "" {
		a := d.active
		rm := wire.ReportedModel{Active: &a, State: wire.StateActive, RolloutID: d.rollout, Since: r.TS}
		if d.previous > 0 {
			p := d.previous
			rm.Previous = &p
		}
		r.Models[d.model] = rm
	}
	return r
}

// handle takes one message of the subscriber connection (paho's router, in order).
func (s *Sim) handle(_ paho.Client, m paho.Message) {
	k, id, extra, err := s.cfg.Topics.Parse(m.Topic())
	if err != nil {
		return
	}
	switch k {
	case wire.KindDesired:
		s.desired(id, m.Payload())
	case wire.KindAck:
		s.ack(id, m.Payload())
	case wire.KindChunk:
		s.counts.devFrames.Add(1)
		s.frame(id, "", m.Payload())
	case wire.KindModelChunk:
		s.counts.shared.Add(1)
		s.frame("", extra, m.Payload())
	}
}

func (s *Sim) bad(what string, args ...any) {
	s.counts.bad.Add(1)
	s.log.Error("loadgen: "+what, args...)
}

// desired acts on a desired state as an agent does: a newer rev naming a version the device
// does not run starts a pull (manifest on the device's topic).
func (s *Sim) desired(id string, b []byte) {
	i, ok := s.byID[id]
	if !ok || len(b) == 0 {
		return // not ours, or a cleared retained message
	}
	s.counts.desired.Add(1)
	ds, err := wire.DecodeDesired(b)
	if err != nil || ds.MatchTopic(id) != nil {
		s.bad("desired payload", "device", id, "err", err)
		return
	}
	if i%s.cfg.VerifyEvery == 0 {
		if err := ds.Verify(s.ring); err != nil {
			s.bad("desired signature", "device", id, "err", err)
			return
		}
		for _, m := range ds.Models {
			if err := s.ring.VerifyApproval(m.Approval(), m.ApprovalSignature); err != nil {
				s.bad("model approval", "device", id, "model", m.Name, "err", err)
				return
			}
		}
		s.counts.verified.Add(1)
	}
	d := s.devs[i]
	s.mu.Lock()
	if ds.Rev <= d.rev || (d.want != nil && ds.Rev <= d.want.rev) {
		s.mu.Unlock()
		return // a refresh of what it acted on, or the pull in progress
	}
	if d.want != nil {
		delete(d.want.g.waiting, d.idx)
		d.want = nil
	}
	if len(ds.Models) == 0 || (len(ds.Models) == 1 && d.model == ds.Models[0].Name && d.active == ds.Models[0].Version) {
		d.rev = ds.Rev
		r := s.reportedLocked(d, "")
		s.mu.Unlock()
		s.send(d, wire.KindReported, s.cfg.Topics.Reported(d.id), r)
		return
	}
	m := ds.Models[0] // the load test rolls out one model
	key := wire.VersionRef(m.Name, m.Version) + "/" + m.ManifestDigest
	g := s.pulls[key]
	if g == nil {
		g = &pull{key: key, waiting: map[int]*device{}}
		s.pulls[key] = g
	}
	d.want = &pullWant{rev: ds.Rev, m: m, g: g, deadline: time.Now().Add(s.cfg.FetchTimeout)}
	g.waiting[d.idx] = d
	r := s.reportedLocked(d, wire.StateDownloading)
	s.mu.Unlock()
	s.send(d, wire.KindReported, s.cfg.Topics.Reported(d.id), r)
	s.fetch(d, []string{m.ManifestDigest}, "", "")
}

// fetch sends one fetch request for d (shared: naming the model's shared topic).
func (s *Sim) fetch(d *device, digests []string, shared, sub string) {
	for len(digests) > 0 {
		n := min(len(digests), wire.MaxFetchDigests)
		s.send(d, wire.KindFetch, s.cfg.Topics.Fetch(d.id), wire.FetchRequest{Header: wire.Header{DeviceID: d.id, TS: time.Now().UnixMilli()},
			RequestID: newID(), Digests: digests[:n], Shared: shared, SharedSub: sub})
		digests = digests[n:]
	}
}

// frame takes one chunk frame, from device id's own topic or from model's shared topic.
func (s *Sim) frame(id, model string, b []byte) {
	f, err := wire.DecodeFrame(b)
	if err != nil {
		s.bad("chunk frame", "device", id, "model", model, "err", err)
		return
	}
	if f.Kind == wire.FrameNotFound {
		s.bad("the hub has no object", "device", id, "digest", f.DigestString())
		return
	}
	key := f.RequestID + "/" + f.DigestString()
	s.mu.Lock()
	o := s.objs[key]
	if o == nil {
		if o, err = wire.NewObject(f); err != nil {
			s.mu.Unlock()
			s.bad("chunk frame", "err", err)
			return
		}
		s.objs[key] = o
	}
	done, err := o.Add(f)
	if err != nil || done {
		delete(s.objs, key)
	}
	s.mu.Unlock()
	if err != nil {
		s.bad("chunk frame digest", "device", id, "model", model, "err", err)
		return
	}
	if !done {
		return
	}
	digest := f.DigestString()
	now := time.Now()
	if model != "" {
		s.sharedArrived(model, digest, now)
		return
	}
	i, ok := s.byID[id]
	if !ok {
		return
	}
	d := s.devs[i]
	s.mu.Lock()
	w := d.want
	if w == nil {
		s.mu.Unlock()
		return
	}
	if w.step == 0 && digest == w.m.ManifestDigest {
		if w.g.manifest == nil {
			man, err := artifact.DecodeManifest(o.Bytes())
			if err != nil {
				s.mu.Unlock()
				s.bad("manifest", "device", id, "err", err)
				return
			}
			w.g.manifest = &man
			w.g.index = make(map[string]int, len(man.Chunks))
			for j, c := range man.Chunks {
				w.g.index[c.Digest] = j
			}
		}
		chunks := make([]string, 0, len(w.g.manifest.Chunks))
		for _, c := range w.g.manifest.Chunks {
			chunks = append(chunks, c.Digest)
		}
		w.step, w.have, w.left, w.sub, w.listen = 1, make([]bool, len(chunks)), len(chunks), newID(), now
		w.deadline, w.shared = now.Add(wire.SharedDeadline(s.cfg.FetchTimeout)), true
		sub := w.sub
		s.mu.Unlock()
		s.fetch(d, chunks, w.m.Name, sub)
		return
	}
	if j, ok := w.g.index[digest]; ok && w.step == 1 {
		s.gotLocked(d, j, now, false)
	}
	s.mu.Unlock()
}

// sharedArrived gives a chunk that arrived on model's shared topic to every device listening
// since before it was published.
func (s *Sim) sharedArrived(model, digest string, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, g := range s.pulls {
		j, ok := g.index[digest]
		if !ok {
			continue
		}
		for _, d := range g.waiting {
			if w := d.want; w != nil && w.step == 1 && w.m.Name == model && w.listen.Before(now) {
				s.gotLocked(d, j, now, true)
			}
		}
	}
}

// gotLocked records chunk j for d (from the shared topic: shared); the last one makes d activate
// and report active.
func (s *Sim) gotLocked(d *device, j int, now time.Time, shared bool) {
	w := d.want
	if w.have[j] {
		return
	}
	w.have[j] = true
	w.left--
	if later := now.Add(wire.SharedDeadline(s.cfg.FetchTimeout)); shared && w.shared && w.deadline.Before(later) {
		w.deadline = later // the shared topic is delivering what the request asked there
	}
	if w.left > 0 {
		return
	}
	delete(w.g.waiting, d.idx)
	act := s.reportedLocked(d, wire.StateActivating)
	if d.model == w.m.Name && d.active != w.m.Version {
		d.previous = d.active
	} else if d.model != w.m.Name {
		d.previous = 0
	}
	d.model, d.active, d.rollout, d.rev, d.want = w.m.Name, w.m.Version, w.m.RolloutID, w.rev, nil
	done := s.reportedLocked(d, "")
	s.last.Store(now.UnixNano())
	s.lastBy[w.m.RolloutID] = now
	go func() { // never publish under s.mu, nor block paho's router
		s.send(d, wire.KindReported, s.cfg.Topics.Reported(d.id), act)
		s.send(d, wire.KindReported, s.cfg.Topics.Reported(d.id), done)
	}()
}

// ack records a report acknowledgement.
func (s *Sim) ack(id string, b []byte) {
	i, ok := s.byID[id]
	if !ok {
		return
	}
	a, err := wire.DecodeAck(b)
	if err != nil || a.MatchTopic(id) != nil {
		s.bad("ack payload", "device", id, "err", err)
		return
	}
	s.counts.acks.Add(1)
	if a.Epoch != s.epoch {
		return
	}
	d := s.devs[i]
	s.mu.Lock()
	if a.Seq > d.acked && a.Seq <= d.seq {
		d.acked = a.Seq
	}
	s.mu.Unlock()
}

// periodic sends heartbeats, each device at its own phase of the interval, and the running
// devices' validation reports likewise.
func (s *Sim) periodic(ctx context.Context) {
	const tick = 50 * time.Millisecond
	t := time.NewTicker(tick)
	defer t.Stop()
	n := len(s.devs)
	hbNext, winNext := 0, 0
	hbAcc, winAcc := 0.0, 0.0
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		hbAcc += float64(n) * float64(tick) / float64(s.cfg.Heartbeat)
		for ; hbAcc >= 1; hbAcc-- {
			s.heartbeat(s.devs[hbNext])
			hbNext = (hbNext + 1) % n
		}
		if s.cfg.Window < 0 {
			continue
		}
		winAcc += float64(n) * float64(tick) / float64(s.cfg.Window)
		for ; winAcc >= 1; winAcc-- {
			s.validation(s.devs[winNext])
			winNext = (winNext + 1) % n
		}
	}
}

func (s *Sim) heartbeat(d *device) {
	s.mu.Lock()
	var act []string
	if d.model != "" {
		act = []string{wire.VersionRef(d.model, d.active)}
	}
	s.mu.Unlock()
	s.send(d, wire.KindHeartbeat, s.cfg.Topics.Heartbeat(d.id), wire.Heartbeat{Header: wire.Header{DeviceID: d.id, TS: time.Now().UnixMilli()},
		UptimeS: int64(time.Since(s.start).Seconds()), AgentVersion: "loadgen", ActiveModels: act, RSS: 32 << 20})
}

// validation sends d's numbered validation report of the window that just ended, when it runs
// a model (60 valid rows: one reading a second).
func (s *Sim) validation(d *device) {
	now := time.Now().UnixMilli()
	s.mu.Lock()
	if d.model == "" {
		d.windowStart = now
		s.mu.Unlock()
		return
	}
	d.seq++
	v := wire.Validation{Header: wire.Header{DeviceID: d.id, TS: now}, Window: wire.Window{Index: int64(d.seq), WindowStart: d.windowStart, WindowEnd: now},
		ModelRef: wire.ModelRef{Model: d.model, Version: d.active}, ReportSeq: wire.ReportSeq{Seq: d.seq, Epoch: s.epoch, First: d.acked + 1},
		Rows: 60, Valid: 60, ValidShare: 1, Violations: map[string]map[string]int64{}}
	d.windowStart = now
	s.mu.Unlock()
	s.send(d, wire.KindValidation, s.cfg.Topics.Validation(d.id), v)
}

// retries asks again, on the device's own topic, for what a pulling device still misses at its
// request's deadline (pullWant.deadline); the retry waits FetchTimeout.
func (s *Sim) retries(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	type again struct {
		d       *device
		digests []string
		chunks  bool
	}
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			var todo []again
			s.mu.Lock()
			for _, g := range s.pulls {
				for _, d := range g.waiting {
					w := d.want
					if w == nil || now.Before(w.deadline) {
						continue
					}
					w.deadline, w.shared = now.Add(s.cfg.FetchTimeout), false
					if w.step == 0 {
						todo = append(todo, again{d, []string{w.m.ManifestDigest}, false})
						continue
					}
					var miss []string
					for j, ok := range w.have {
						if !ok {
							miss = append(miss, g.manifest.Chunks[j].Digest)
						}
					}
					todo = append(todo, again{d, miss, true})
				}
			}
			s.mu.Unlock()
			for _, a := range todo {
				s.counts.retries.Add(1)
				if a.chunks {
					s.counts.chunkRetries.Add(1)
				}
				s.fetch(a.d, a.digests, "", "")
			}
		}
	}
}

// Stats returns the counters so far.
func (s *Sim) Stats() Stats {
	st := Stats{Published: map[string]int64{}, Running: map[string]int{}}
	for _, p := range s.pubs {
		p.mu.Lock()
		for k, v := range p.sent {
			st.Published[k] += v
		}
		st.PublishErrors += p.errs
		p.mu.Unlock()
	}
	st.Desired, st.Verified, st.BadPayloads = s.counts.desired.Load(), s.counts.verified.Load(), s.counts.bad.Load()
	st.SharedFrames, st.DeviceFrames, st.Retries, st.Acks = s.counts.shared.Load(), s.counts.devFrames.Load(), s.counts.retries.Load(), s.counts.acks.Load()
	st.ChunkRetries = s.counts.chunkRetries.Load()
	if l := s.last.Load(); l != 0 {
		st.LastActive = time.Unix(0, l)
	}
	s.mu.Lock()
	st.LastActiveBy = make(map[string]time.Time, len(s.lastBy))
	for k, v := range s.lastBy {
		st.LastActiveBy[k] = v
	}
	for _, d := range s.devs {
		if d.model != "" {
			st.Running[wire.VersionRef(d.model, d.active)]++
		}
		if d.want != nil {
			st.Pulling++
		}
	}
	s.mu.Unlock()
	return st
}

// newID returns a fresh request or subscription id (wire.ValidateRequestID).
func newID() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// msg is one queued publish.
type msg struct {
	topic   string
	payload []byte
	qos     byte
	retain  bool
	kind    string
}

// publisher sends one connection's messages in order, with at most inFlight QoS 1 messages
// unacknowledged.
type publisher struct {
	c        paho.Client
	ch       chan msg
	inFlight int
	done     chan struct{}
	quit     <-chan struct{}
	mu       sync.Mutex
	sent     map[string]int64
	errs     int64
}

func newPublisher(c paho.Client, inFlight int, quit <-chan struct{}) *publisher {
	return &publisher{c: c, ch: make(chan msg, 4096), inFlight: inFlight, done: make(chan struct{}), quit: quit, sent: map[string]int64{}}
}

func (p *publisher) run() {
	defer close(p.done)
	var window []paho.Token
	wait := func(t paho.Token) {
		if !t.WaitTimeout(60*time.Second) || t.Error() != nil {
			p.mu.Lock()
			p.errs++
			p.mu.Unlock()
		}
	}
	defer p.c.Disconnect(250)
	for {
		var m msg
		select {
		case m = <-p.ch:
		case <-p.quit:
			for _, t := range window {
				wait(t)
			}
			return
		}
		t := p.c.Publish(m.topic, m.qos, m.retain, m.payload)
		p.mu.Lock()
		p.sent[m.kind]++
		p.mu.Unlock()
		if m.qos == 0 {
			continue
		}
		window = append(window, t)
		if len(window) >= p.inFlight {
			wait(window[0])
			window = window[1:]
		}
	}
}
