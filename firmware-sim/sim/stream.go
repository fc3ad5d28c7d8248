package sim

import (
	"math"
	"math/rand/v2"
	"sort"
	"time"
)

// Row is one reading: the values of the fields in payload order. A value is a float64, a
// string, or nil (JSON null).
type Row []any

// Message is one publish of one device's firmware.
type Message struct {
	// Seq counts the device's messages from 0, dropped ones included.
	Seq int
	// At is when the message is due, from the scenario's start.
	At time.Duration
	// TS is the reading time written into the payload (Options.Start + At).
	TS time.Time
	// Rows are the readings the payload carries (also when Malformed).
	Rows []Row
	// Malformed reports that Payload was deliberately broken (malformed_json).
	Malformed bool
	// Payload is the bytes published on the device's data topic.
	Payload []byte
}

// Stream is one device's message sequence. It is not safe for concurrent use; each device has
// its own. Values come from one random source and event effects from another, so an event
// changes the readings it targets and nothing else.
type Stream struct {
	f      *Fleet
	dev    int
	id     string
	vals   *rand.Rand
	events *rand.Rand
	walk   []float64
	seq    int
	off    []Window
	names  []string
	decs   []int
}

// Stream returns device i's stream (0-based), positioned at its first message.
func (f *Fleet) Stream(i int) *Stream {
	st := &Stream{
		f: f, dev: i, id: f.ids[i],
		vals:   rand.New(rand.NewPCG(f.opts.Seed, 2*uint64(i)+1)),
		events: rand.New(rand.NewPCG(f.opts.Seed^0x9e3779b97f4a7c15, 2*uint64(i)+2)),
		off:    f.Disconnects(i),
	}
	if f.series != nil {
		st.names = f.series.Fields
		st.decs = make([]int, len(st.names))
		for k := range st.decs {
			st.decs[k] = -1
		}
	} else {
		st.walk = make([]float64, len(f.s.Fields))
		for k, fl := range f.s.Fields {
			st.walk[k] = fl.Start
			st.names = append(st.names, fl.Name)
			d := 3
			if fl.Decimals != nil {
				d = *fl.Decimals
			}
			st.decs = append(st.decs, d)
		}
	}
	return st
}

// ID returns the stream's device id.
func (st *Stream) ID() string { return st.id }

// Disconnects returns the device's disconnect windows.
func (st *Stream) Disconnects() []Window { return st.off }

// Next returns the next message the device publishes, skipping those that fall inside a
// disconnect (the simulated firmware keeps no buffer). ok is false when the scenario is over.
func (st *Stream) Next() (m Message, ok bool) {
	for {
		at, ok := st.due(st.seq)
		if !ok {
			return Message{}, false
		}
		if w, off := st.offline(at); off {
			st.seek(w.To)
			continue
		}
		return st.next()
	}
}

func (st *Stream) offline(at time.Duration) (Window, bool) {
	for _, w := range st.off {
		if at >= w.From && at < w.To {
			return w, true
		}
	}
	return Window{}, false
}

// due returns when message seq is due, and false past the end of the scenario.
func (st *Stream) due(seq int) (time.Duration, bool) {
	s := st.f.s
	var at time.Duration
	if st.f.series != nil {
		n := len(st.f.sched)
		pass := seq / n
		if pass > 0 && !s.Replay.Loop {
			return 0, false
		}
		at = time.Duration(pass)*st.f.span + st.f.sched[seq%n]
	} else {
		at = time.Duration(float64(seq) * float64(time.Second) / s.Rate)
	}
	if s.Duration > 0 && at >= s.Duration.D() {
		return 0, false
	}
	return at, true
}

// seek moves past every message due before t (at least one, so Next always progresses).
func (st *Stream) seek(t time.Duration) {
	s := st.f.s
	next := st.seq + 1
	if st.f.series == nil {
		next = max(next, int(math.Ceil(t.Seconds()*s.Rate)))
	} else {
		n := len(st.f.sched)
		pass := int(t / st.f.span)
		k := sort.Search(n, func(i int) bool { return st.f.sched[i] >= t-time.Duration(pass)*st.f.span })
		next = max(next, pass*n+k)
	}
	for next > st.seq+1 {
		at, ok := st.due(next - 1)
		if !ok || at < t { // past the end either way, or next is the first due at t or later
			break
		}
		next--
	}
	st.seq = next
}

func (st *Stream) next() (Message, bool) {
	s := st.f.s
	seq := st.seq
	at, ok := st.due(seq)
	if !ok {
		return Message{}, false
	}
	var src []Row
	if st.f.series != nil {
		vals := st.f.series.Points[seq%len(st.f.sched)].Values
		src = []Row{append(Row(nil), vals...)}
	}
	st.seq++
	m := Message{Seq: seq, At: at, TS: st.f.opts.Start.Add(at)}
	batch := s.Batch
	if src != nil {
		batch = 1
	}
	step := s.Interval() / time.Duration(batch)
	tss := make([]int64, batch)
	for j := 0; j < batch; j++ {
		rowAt := at - time.Duration(batch-1-j)*step
		if src == nil {
			m.Rows = append(m.Rows, st.row(rowAt))
		} else {
			m.Rows = append(m.Rows, st.applyEvents(rowAt, src[j]))
		}
		tss[j] = st.f.opts.Start.Add(rowAt).UnixMilli()
	}
	m.Payload = st.encode(m.Rows, tss)
	if p, ok := st.active(at, EventMalformedJSON); ok && st.hit(p) {
		m.Malformed = true
		m.Payload = m.Payload[:len(m.Payload)/2]
	}
	return m, true
}

// row draws one reading at scenario time t.
func (st *Stream) row(t time.Duration) Row {
	fields := st.f.s.Fields
	r := make(Row, len(fields))
	for k := range fields {
		fl := &fields[k]
		factor := 1.0
		for ei, e := range st.f.s.Events {
			if e.Kind == EventVarianceChange && e.Field == fl.Name && st.on(ei, t) {
				factor *= e.Factor
			}
		}
		switch fl.Dist {
		case DistNormal:
			r[k] = fl.Mean + st.vals.NormFloat64()*fl.Stddev*factor
		case DistUniform:
			mid := (*fl.Min + *fl.Max) / 2
			r[k] = mid + (*fl.Min+st.vals.Float64()*(*fl.Max-*fl.Min)-mid)*factor
		case DistSine:
			c := fl.Offset + fl.Amplitude*math.Sin(2*math.Pi*t.Seconds()/fl.Period.D().Seconds())
			r[k] = c + st.vals.NormFloat64()*fl.Noise*factor
		case DistRandomWalk:
			v := st.walk[k] + st.vals.NormFloat64()*fl.Step*factor
			if fl.Min != nil {
				v = math.Min(math.Max(v, *fl.Min), *fl.Max)
			}
			st.walk[k] = v
			r[k] = v
		case DistCategorical:
			r[k] = fl.Values[pick(st.vals, fl.Weights, len(fl.Values))]
		}
	}
	return st.applyEvents(t, r)
}

// applyEvents applies the value events active at t to r, in scenario order, then rounds.
func (st *Stream) applyEvents(t time.Duration, r Row) Row {
	for ei, e := range st.f.s.Events {
		if !st.on(ei, t) {
			continue
		}
		k := st.index(e.Field)
		if k < 0 {
			continue
		}
		switch e.Kind {
		case EventMeanShift:
			if v, ok := r[k].(float64); ok {
				r[k] = v + e.Delta
			}
		case EventCategorySwap:
			if v, ok := r[k].(string); ok {
				if to, ok := e.Swap[v]; ok {
					r[k] = to
				}
			}
		case EventOutOfRange:
			if st.hit(e.Probability) {
				r[k] = *e.Value
			}
		case EventWrongType:
			if st.hit(e.Probability) {
				if _, ok := r[k].(string); ok {
					r[k] = 12345.0
				} else {
					r[k] = "ERR"
				}
			}
		case EventNulls:
			if st.hit(e.Probability) {
				r[k] = nil
			}
		}
	}
	for k, v := range r {
		if f, ok := v.(float64); ok && st.decs[k] >= 0 {
			p := math.Pow(10, float64(st.decs[k]))
			r[k] = math.Round(f*p) / p
		}
	}
	return r
}

func (st *Stream) index(name string) int {
	for k, n := range st.names {
		if n == name {
			return k
		}
	}
	return -1
}

// on reports whether event ei applies to this device at t.
func (st *Stream) on(ei int, t time.Duration) bool {
	e := st.f.s.Events[ei]
	if !st.f.selected[ei][st.dev] || t < e.At.D() {
		return false
	}
	return e.Duration == 0 || t < e.At.D()+e.Duration.D()
}

// active returns the probability of the first event of kind active at t for this device.
func (st *Stream) active(t time.Duration, kind string) (*float64, bool) {
	for ei, e := range st.f.s.Events {
		if e.Kind == kind && st.on(ei, t) {
			return e.Probability, true
		}
	}
	return nil, false
}

// hit draws from the event source: true with probability p (nil: always, without a draw).
func (st *Stream) hit(p *float64) bool {
	if p == nil {
		return true
	}
	return st.events.Float64() < *p
}

// pick draws an index by weights (nil: equal weights).
func pick(r *rand.Rand, weights []float64, n int) int {
	if len(weights) == 0 {
		return r.IntN(n)
	}
	sum := 0.0
	for _, w := range weights {
		sum += w
	}
	x := r.Float64() * sum
	for i, w := range weights {
		if x < w {
			return i
		}
		x -= w
	}
	return n - 1
}
