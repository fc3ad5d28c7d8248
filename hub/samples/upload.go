package samples

import (
	"errors"
	"time"

	"github.com/driftline/driftline/shared/wire"
)

// Upload bounds of the assembler (Collector.HandlePart).
const (
	// MaxOpenUploads bounds the uploads being assembled at once on a node; the least recently
	// fed is forgotten (its device sends it again when no ack comes).
	MaxOpenUploads = 64
	// MaxOpenBytes bounds the bytes held by uploads being assembled.
	MaxOpenBytes = 64 << 20
	// doneMemory is how many finished uploads are remembered, so that a repeat (the agent
	// missed the ack) is acknowledged again without being staged twice.
	doneMemory = 1024
)

// uploadKey names one upload: the device and its upload id.
type uploadKey struct{ device, id string }

// openUpload is an upload being assembled.
type openUpload struct {
	obj  *wire.Object
	size int
	seen time.Time
}

// doneUpload is the outcome of a finished upload, for repeats.
type doneUpload struct {
	digest string
	ack    wire.SampleAck
}

// HandlePart takes one frame of a sample upload (PREFIX/dev/{id}/sample_part). Frames of one
// upload may come in any order and repeated; once every part is in and the bytes hash to the
// frame's digest, the sample is queued for staging like a Handle'd one and acknowledged to the
// device (wire.SampleAck) after the staging committed, or refused. A whole that does not match
// its digest is dropped (the device sends it again). A repeat of a finished upload is
// acknowledged again and not staged twice. It never blocks.
func (c *Collector) HandlePart(device string, payload []byte) {
	if c.cfg.LeaderOnly && !c.cfg.Store.IsLeader() {
		return // with an external broker the leader hears the same frames
	}
	f, err := wire.DecodeFrame(payload)
	if err != nil || f.Kind != wire.FrameData || f.Total > wire.MaxSampleUpload {
		c.parts.WithLabelValues("bad").Inc()
		c.log.Warn("bad sample upload frame", "device", device, "err", err)
		return
	}
	key := uploadKey{device, f.RequestID}
	c.upMu.Lock()
	defer c.upMu.Unlock()
	if d, ok := c.done[key]; ok {
		if d.digest == f.DigestString() && f.Offset == 0 { // once per repeated upload
			c.parts.WithLabelValues("repeat").Inc()
			ack := d.ack
			select {
			case c.queue <- staged{device: device, again: &ack}: // published by Run, not here
			default:
			}
		}
		return
	}
	u := c.open[key]
	if u == nil {
		obj, err := wire.NewObject(f)
		if err != nil {
			c.parts.WithLabelValues("bad").Inc()
			return
		}
		c.makeRoom(int(f.Total))
		u = &openUpload{obj: obj, size: int(f.Total)}
		c.open[key] = u
		c.openBytes += u.size
	}
	u.seen = c.cfg.Now()
	done, err := u.obj.Add(f)
	switch {
	case errors.Is(err, wire.ErrFrameDigest):
		c.parts.WithLabelValues("digest").Inc()
		c.log.Warn("sample upload does not match its digest: dropped, the device sends it again", "device", device, "upload", f.RequestID)
		c.closeOpen(key)
		return
	case err != nil:
		c.parts.WithLabelValues("bad").Inc()
		c.log.Warn("bad sample upload frame", "device", device, "upload", f.RequestID, "err", err)
		return
	}
	c.parts.WithLabelValues("ok").Inc()
	if !done {
		return
	}
	whole := u.obj.Bytes()
	c.closeOpen(key)
	digest := f.DigestString()
	s := staged{device: device, payload: whole, upload: f.RequestID, digest: digest}
	select {
	case c.queue <- s:
	default:
		c.samples.WithLabelValues("dropped").Inc()
		c.log.Warn("sample dropped: the staging queue is full (the device sends it again)", "device", device)
	}
}

// makeRoom forgets the least recently fed open uploads until one of size fits. Called with
// upMu held.
func (c *Collector) makeRoom(size int) {
	for len(c.open) > 0 && (len(c.open) >= MaxOpenUploads || c.openBytes+size > MaxOpenBytes) {
		var oldest uploadKey
		var at time.Time
		first := true
		for k, u := range c.open {
			if first || u.seen.Before(at) {
				oldest, at, first = k, u.seen, false
			}
		}
		c.parts.WithLabelValues("evicted").Inc()
		c.closeOpen(oldest)
	}
}

func (c *Collector) closeOpen(key uploadKey) {
	if u := c.open[key]; u != nil {
		c.openBytes -= u.size
		delete(c.open, key)
	}
}

// finished records an upload's outcome and acknowledges it to the device. Called from stage.
func (c *Collector) finished(s staged, status, reason string) {
	if s.upload == "" {
		return // a sample of the previous release (one JSON message): nothing to acknowledge
	}
	ack := wire.SampleAck{Header: wire.Header{DeviceID: s.device, TS: c.cfg.Now().UnixMilli()},
		UploadID: s.upload, Digest: s.digest, Status: status, Error: reason}
	c.upMu.Lock()
	if len(c.done) >= doneMemory {
		clear(c.done) // rare: repeats come within minutes of the first
	}
	c.done[uploadKey{s.device, s.upload}] = doneUpload{digest: s.digest, ack: ack}
	c.upMu.Unlock()
	c.publishAck(ack)
}

func (c *Collector) publishAck(a wire.SampleAck) {
	if c.cfg.Publish == nil {
		return
	}
	b, err := wire.Encode(a)
	if err != nil {
		c.log.Error("encode sample ack", "err", err)
		return
	}
	if err := c.cfg.Publish(c.cfg.Topics.SampleAck(a.DeviceID), b); err != nil {
		c.log.Warn("publish sample ack", "device", a.DeviceID, "err", err)
	}
}
