package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/raft"

	"github.com/driftline/driftline/hub/command"
	"github.com/driftline/driftline/shared/clock"
)

// request is one caller's command waiting for group commit.
type request struct {
	data []byte
	// parts > 0: data is a TypeBatch of the parts of one split command (Splitter), proposed as
	// an entry of its own; result names the part whose result is the command's.
	parts, result int
	// unsplit is why a command the processor split went out whole (ErrClusterBehind).
	unsplit error
	done    chan result // buffered 1: the committer never blocks on a caller that gave up
}

// Apply proposes env and returns its result once it is applied on this node (the leader). A
// follower returns ErrNotLeader at once: forwarding is the API layer's job. A zero env.Time is
// set to the leader's clock (Unix ms).
//
// Concurrent calls are combined into TypeBatch raft entries (group commit); each caller gets its
// own command's result. If ctx ends first the result is ErrTimeout and the command may still be
// applied; ErrLeadershipLost also means the outcome is unknown. Use request ids (env.ID) so a
// retry is harmless.
func (s *Store) Apply(ctx context.Context, env command.Envelope) (any, error) {
	start := time.Now()
	select {
	case <-s.stop:
		return nil, ErrShutdown
	default:
	}
	if !s.IsLeader() {
		return nil, ErrNotLeader
	}
	if !env.Type.Known() && env.Type&command.IgnoreIfUnknown == 0 {
		// It would stop every node that applies it (applier.halt).
		return nil, fmt.Errorf("%w: type %d is unknown to this build and not marked ignore-if-unknown", ErrBadCommand, uint16(env.Type))
	}
	if env.Time == 0 {
		env.Time = clock.Now().UnixMilli()
	}
	req, err := s.encodeRequest(ctx, env)
	if err != nil {
		return nil, err
	}
	select {
	case s.queue <- req:
	case <-ctx.Done():
		return nil, fmt.Errorf("%w: queueing command: %w", ErrTimeout, ctx.Err())
	case <-s.stop:
		return nil, ErrShutdown
	}
	select {
	case r := <-req.done:
		s.metrics.observeApply(start)
		if req.unsplit != nil && errors.Is(r.err, ErrCommandTooBig) {
			r.err = fmt.Errorf("%w (%w: %w)", r.err, ErrNotSplit, req.unsplit)
		}
		return r.val, r.err
	case <-ctx.Done():
		return nil, fmt.Errorf("%w: waiting for command: %w", ErrTimeout, ctx.Err())
	case <-s.stop:
		return nil, ErrShutdown
	}
}

// encodeRequest encodes env, or its parts when the processor splits it (Splitter) and every
// node of the cluster knows the parts' types (ClusterKnows); while one does not, env goes out
// whole, as a build before parts proposed it. The choice is made here, once per command: the
// parts of a command are never mixed with a whole.
func (s *Store) encodeRequest(ctx context.Context, env command.Envelope) (*request, error) {
	req := &request{done: make(chan result, 1)}
	var parts []command.Envelope
	var res int
	var err error
	if sp, ok := s.cfg.Processor.(Splitter); ok {
		if parts, res, err = sp.Split(s.cfg.DB, env); err != nil {
			return nil, err
		}
	}
	if len(parts) > 0 {
		if err := s.ClusterKnows(ctx, newestType(parts)); err != nil {
			s.log.Warn("command proposed whole, not in parts: a node of the cluster does not know the parts yet", "type", uint16(env.Type), "parts", len(parts), "err", err)
			s.metrics.unsplit.Inc()
			parts, req.unsplit = nil, err
		}
	}
	if len(parts) == 0 {
		data, err := command.Encode(env)
		req.data = data
		return req, err
	}
	b := command.Batch{Entries: make([][]byte, len(parts))}
	for i, p := range parts {
		p.Time = env.Time
		if b.Entries[i], err = command.Encode(p); err != nil {
			return nil, err
		}
	}
	benv, err := command.New(command.TypeBatch, "", env.Time, env.Actor, b)
	if err != nil {
		return nil, err
	}
	req.data, err = command.Encode(benv)
	req.parts, req.result = len(parts), res
	return req, err
}

// newestType is the highest type among parts.
func newestType(parts []command.Envelope) command.Type {
	var t command.Type
	for _, p := range parts {
		t = max(t, p.Type&^command.IgnoreIfUnknown)
	}
	return t
}

// commitLoop takes queued requests, groups those that are waiting into one raft entry, and keeps
// at most maxInflight entries in flight: while they are, new requests pile up and form the next,
// bigger group.
func (s *Store) commitLoop() {
	defer s.wg.Done()
	slots := make(chan struct{}, maxInflight)
	var carry *request
	for {
		first := carry
		carry = nil
		if first == nil {
			select {
			case first = <-s.queue:
			case <-s.stop:
				s.failQueued()
				return
			}
		}
		select {
		case slots <- struct{}{}:
		case <-s.stop:
			first.done <- result{err: ErrShutdown}
			s.failQueued()
			return
		}
		group := []*request{first}
		if len(first.data) < bigCommand && first.parts == 0 {
			group, carry = s.gather(group)
		}
		data, err := encodeGroup(group)
		if err != nil {
			deliverAll(group, err)
			<-slots
			continue
		}
		fut := s.raft.Apply(data, enqueueTimeout)
		// The delivering goroutine is not one the store waits for at shutdown: raft does not
		// answer every future still in its pipeline when it shuts down (an aborted leader left
		// one waiting forever, and shutdown with it), and nothing here needs it to finish: it
		// touches only the requests' buffered channels and slots, and every caller stops
		// waiting at s.stop (wait).
		go func() {
			defer func() { <-slots }()
			s.deliver(group, fut)
		}()
	}
}

// gather adds queued requests to group without waiting, within the batch bounds. A request that
// does not fit is returned as carry, to start the next group.
func (s *Store) gather(group []*request) (all []*request, carry *request) {
	size := len(group[0].data)
	for len(group) < maxBatchCommands {
		select {
		case r := <-s.queue:
			if r.parts > 0 || len(r.data) >= bigCommand || size+len(r.data) > maxBatchBytes {
				return group, r
			}
			group = append(group, r)
			size += len(r.data)
		default:
			return group, nil
		}
	}
	return group, nil
}

func encodeGroup(group []*request) ([]byte, error) {
	if len(group) == 1 {
		return group[0].data, nil
	}
	b := command.Batch{Entries: make([][]byte, len(group))}
	for i, r := range group {
		b.Entries[i] = r.data
	}
	env, err := command.New(command.TypeBatch, "", 0, "", b)
	if err != nil {
		return nil, err
	}
	return command.Encode(env)
}

// deliver waits for the entry and hands each request its own result.
func (s *Store) deliver(group []*request, fut raft.ApplyFuture) {
	if err := fut.Error(); err != nil {
		deliverAll(group, translate("apply", err))
		return
	}
	switch resp := fut.Response().(type) {
	case *result:
		if len(group) == 1 {
			group[0].done <- *resp
			return
		}
		deliverAll(group, resp.err) // the whole batch failed to decode
	case []result:
		if len(group) == 1 && group[0].parts > 0 {
			group[0].done <- partsResult(resp, group[0])
			return
		}
		if len(resp) != len(group) {
			deliverAll(group, fmt.Errorf("%w: %d results for %d commands", ErrBadCommand, len(resp), len(group)))
			return
		}
		for i, r := range group {
			r.done <- resp[i]
		}
	default:
		deliverAll(group, fmt.Errorf("%w: unexpected FSM response %T", ErrBadCommand, resp))
	}
}

func deliverAll(group []*request, err error) {
	for _, r := range group {
		r.done <- result{err: err}
	}
}

// failQueued answers every queued request with ErrShutdown.
func (s *Store) failQueued() {
	for {
		select {
		case r := <-s.queue:
			r.done <- result{err: ErrShutdown}
		default:
			return
		}
	}
}

// partsResult is the result of split request r from its parts' results.
func partsResult(resp []result, r *request) result {
	if len(resp) != r.parts {
		return result{err: fmt.Errorf("%w: %d results for %d parts", ErrBadCommand, len(resp), r.parts)}
	}
	vals, errs := make([]any, len(resp)), make([]error, len(resp))
	for i, x := range resp {
		vals[i], errs[i] = x.val, x.err
	}
	v, err := PartsResult(vals, errs, r.result)
	return result{val: v, err: err}
}
