package agent

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/driftline/driftline/agent/modelstore"
	"github.com/driftline/driftline/agent/state"
	"github.com/driftline/driftline/shared/artifact"
	"github.com/driftline/driftline/shared/wire"
)

// desiredLoop acts on desired states, one at a time, until ctx ends. It is the only goroutine
// that changes MODELDIR, the chunk cache's pins and the model records' versions.
//
// A revision whose pull failed for a reason that may pass (a stall, too many attempts, a store
// error) is not marked as acted on: it is tried again after a backoff (retryMin doubling to
// retryMax), and at the next start, until it succeeds or a newer revision replaces it.
func (a *Agent) desiredLoop(ctx context.Context) {
	var (
		retryB    []byte // the desired to try again, nil when none
		retryWait time.Duration
		retryT    = time.NewTimer(time.Hour)
	)
	retryT.Stop()
	defer retryT.Stop()
	act := func(b []byte) {
		for {
			err := a.handleDesired(ctx, b)
			switch {
			case errors.Is(err, errPreempted):
				// A newer revision arrived during the pull: act on it now; what was fetched
				// stays in the cache.
				if nb := a.conn.takeDesired(); nb != nil {
					b = nb
					continue
				}
			case errors.Is(err, errRetry):
				retryWait = min(max(2*retryWait, a.retryMin), retryMax)
				retryB = b
				retryT.Reset(retryWait)
				a.log.Info("desired state will be tried again", "in", retryWait)
				return
			}
			retryB, retryWait = nil, 0
			retryT.Stop()
			return
		}
	}
	for {
		select {
		case <-ctx.Done():
			return
		case b := <-a.conn.frames:
			a.fetch.drainIdle(b)
		case <-a.conn.sharedFrames:
			// A frame of a shared subscription that has just ended: nothing wants it.
		case <-a.conn.desiredCh:
			if b := a.conn.takeDesired(); b != nil {
				act(b)
			}
		case <-retryT.C:
			if retryB != nil {
				act(retryB)
			}
		}
	}
}

// retryMax bounds the wait before a failed pull is tried again.
const retryMax = 10 * time.Minute

// errRetry reports that a model failed for a reason that may pass: the revision is tried again.
var errRetry = errors.New("agent: desired state to be tried again")

// transient reports whether a pull failure may pass by itself (so the revision is retried):
// a stall, too many attempts, a store or disk error. Refusals of what the hub sent (signature,
// manifest, not found) and failed health checks are final for the revision.
func transient(err error) bool {
	switch {
	case errors.Is(err, ErrRejected), errors.Is(err, wire.ErrNotFound), errors.Is(err, modelstore.ErrHealthCheck),
		errors.Is(err, modelstore.ErrConflict), errors.Is(err, modelstore.ErrDigestMismatch), errors.Is(err, artifact.ErrFileDigest):
		return false
	}
	return true
}

// decodeDesired parses and checks a desired payload, counting what it refuses.
func (a *Agent) decodeDesired(b []byte) (wire.Desired, bool) {
	d, err := wire.DecodeDesired(b)
	if err == nil {
		err = d.MatchTopic(a.cfg.DeviceID)
	}
	if err != nil {
		a.reject(ReasonMalformedDesired, "malformed desired state", "err", err)
		return wire.Desired{}, false
	}
	return d, true
}

// verifyDesired decodes a desired payload and decides what to make of it: it learns the root
// documents it carries (a rotated key set), then checks the signature, the expiry and the rev
// (trustStore.check). Refusals are counted and logged; a valid one is recorded as heard (the
// freeze detector's clock). It returns the desired state and whether to act on it.
func (a *Agent) verifyDesired(b []byte) (wire.Desired, bool) {
	d, ok := a.decodeDesired(b)
	if !ok {
		return d, false
	}
	if len(d.Roots) > 0 {
		roots := make([][]byte, len(d.Roots))
		for i, r := range d.Roots {
			roots[i] = r
		}
		changed, err := a.trust.learn(roots)
		if err != nil {
			a.reject(ReasonBadRoot, "root of trust refused", "err", err)
		}
		if changed {
			a.log.Info("learnt a new root of trust", "version", a.trust.rootVersion(), "online_keys", a.trust.ring().IDs())
		}
	}
	v, reason, err := a.trust.check(d, time.Now())
	switch v {
	case verdictRefuse:
		a.reject(reason, "desired state refused", "rev", d.Rev, "err", err)
		return d, false
	case verdictFresh, verdictIgnore:
		a.trust.seen(d)
		a.learnRevoked(d)
		a.log.Debug("desired revision already acted on", "rev", d.Rev)
		return d, false
	}
	a.trust.seen(d)
	a.learnRevoked(d)
	return d, true
}

// learnRevoked keeps the revocation list a valid desired state carries.
func (a *Agent) learnRevoked(d wire.Desired) {
	if err := a.trust.revoke(d.Revoked); err != nil {
		a.log.Error("keep revocation list", "err", err)
	}
}

// acceptDesired is the connection's filter: whether an incoming payload may take the desired
// slot.
func (a *Agent) acceptDesired(b []byte) bool {
	_, ok := a.verifyDesired(b)
	return ok
}

// handleDesired acts on one desired payload if it verifies and its revision is above the last
// acted on. The revision is persisted only once every model reached a terminal state, so a
// restart or a preemption resumes it (chunks already verified are in the cache and are not
// fetched again).
func (a *Agent) handleDesired(ctx context.Context, b []byte) error {
	d, ok := a.verifyDesired(b)
	if !ok {
		return nil
	}
	a.log.Info("acting on desired state", "rev", d.Rev, "models", len(d.Models))
	a.retry = false
	a.mu.Lock()
	a.reportRev = d.Rev
	a.mu.Unlock()
	preempt := func() bool {
		nb := a.conn.peekDesired()
		if nb == nil {
			return false
		}
		nd, err := wire.DecodeDesired(nb)
		if err != nil || nd.Rev <= d.Rev {
			return false
		}
		v, _, _ := a.trust.check(nd, time.Now())
		return v == verdictAct
	}
	want := map[string]bool{}
	models := append([]wire.DesiredModel(nil), d.Models...)
	sort.Slice(models, func(i, j int) bool { return models[i].Name < models[j].Name })
	for _, m := range models {
		want[m.Name] = true
		if err := a.applyModel(ctx, m, preempt); err != nil {
			return err
		}
	}
	a.mu.Lock()
	var gone []string
	for n := range a.models {
		if !want[n] {
			gone = append(gone, n)
		}
	}
	a.mu.Unlock()
	sort.Strings(gone)
	for _, n := range gone {
		a.deactivate(n)
	}
	a.gcAssets()
	if a.retry {
		a.report()
		return errRetry
	}
	if err := a.saveRev(d.Rev); err != nil {
		a.log.Error("persist desired revision", "err", err)
	}
	a.report()
	return nil
}

// takePullSlot waits for one of Options.PullSlots (none configured: at once) and returns its
// release, which may be called more than once.
func (a *Agent) takePullSlot(ctx context.Context) (release func(), err error) {
	slots := a.opts.PullSlots
	if slots == nil {
		return func() {}, nil
	}
	select {
	case slots <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	var once sync.Once
	return func() { once.Do(func() { <-slots }) }, nil
}

// applyModel brings one model to the desired version. Failures end in state failed with the
// reason in last_error; only ctx's end and preemption are returned.
func (a *Agent) applyModel(ctx context.Context, m wire.DesiredModel, preempt func() bool) error {
	log := a.log.With("model", m.Name, "version", m.Version)
	if err := modelstore.ValidName(m.Name); err != nil {
		a.reject(ReasonUnknownModel, "model name unusable as a directory", "model", m.Name, "err", err)
		a.fail(m, fmt.Errorf("%w: %v", ErrRejected, err))
		return nil
	}
	a.refreshLinks(m.Name)
	cur, curErr := a.store.Current(m.Name)
	if curErr == nil && cur.Version == m.Version && cur.ManifestDigest == m.ManifestDigest {
		// Already running: make sure what the pipeline needs is here, and say so.
		if err := a.fetchAssets(ctx, m, preempt); err != nil {
			return a.pullFailed(m, err)
		}
		a.setState(m.Name, a.stateFor(m.Name, wire.StateActive), func(r *modelRecord) { a.adopt(r, m); r.Target = 0; r.LastError = "" })
		a.dropPartials(m.Name) // e.g. of a pull this desired preempted
		return nil
	}
	if a.trust.isRevoked(m.Name, m.Version) {
		// Withdrawn by the hub: never activated again, whatever signature it comes with.
		a.reject(ReasonRevoked, "revoked model version refused", "model", m.Name, "version", m.Version)
		a.fail(m, fmt.Errorf("%w: %s@%d was revoked", ErrRejected, m.Name, m.Version))
		return nil
	}
	back := curErr == nil && m.Version < cur.Version
	a.setState(m.Name, wire.StateNotified, func(r *modelRecord) { r.Target = m.Version; r.RolloutID = m.RolloutID; r.LastError = "" })

	// A pull slot (fleet mode) is held from the manifest's request until the file is staged and
	// the contract and profile are here.
	release, err := a.takePullSlot(ctx)
	if err != nil {
		return a.pullFailed(m, err)
	}
	defer release()
	man, err := a.manifest(ctx, m, preempt)
	if err != nil {
		return a.pullFailed(m, err)
	}
	a.failpoint("manifest")
	pin := pinName(m.Name, m.Version)
	digests := make([]string, 0, len(man.Chunks))
	for _, c := range man.Chunks {
		digests = append(digests, c.Digest)
	}
	if err := a.cache.Pin(pin, digests); err != nil {
		return a.pullFailed(m, err)
	}
	a.mu.Lock()
	if r := a.models[m.Name]; r != nil && !contains(r.Pins, pin) {
		r.Pins = append(r.Pins, pin)
		_ = a.saveRecordLocked(m.Name)
	}
	a.mu.Unlock()

	staged, err := a.downloadAndStage(ctx, m, man, preempt)
	if err != nil {
		return a.pullFailed(m, err)
	}
	if err := a.fetchAssets(ctx, m, preempt); err != nil {
		return a.pullFailed(m, err)
	}
	release()

	a.setState(m.Name, wire.StateActivating, nil)
	// The activation runs to its end even when a newer desired arrives: a health check cut
	// short leaves the journal pending until the next start (modelstore).
	err = staged
	if err == nil {
		err = a.store.Activate(ctx, m.Name, m.Version)
	}
	a.refreshLinks(m.Name)
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if err != nil {
		log.Warn("activation failed", "err", err)
		a.m.activations.WithLabelValues(ResultFailed).Inc()
		a.setState(m.Name, wire.StateFailed, func(r *modelRecord) { r.LastError = err.Error() })
		a.releasePins(m.Name)
		if transient(err) {
			a.retry = true // a disk or store error, not a verdict on the version
		} else {
			a.dropPartials(m.Name)
		}
		return nil
	}
	result, st := ResultActive, wire.StateActive
	if back {
		result, st = ResultRolledBack, wire.StateRolledBack
	}
	a.m.activations.WithLabelValues(result).Inc()
	log.Info("model version running", "state", st)
	a.setState(m.Name, st, func(r *modelRecord) { a.adopt(r, m); r.Target = 0; r.LastError = "" })
	a.releasePins(m.Name)
	a.dropPartials(m.Name)
	return nil
}

// dropPartials deletes the partial downloads of name once nothing will resume them: the model
// runs what is desired, or its pull failed for good. A pull that failed for a reason that may
// pass keeps its partial for the retry, and a preempted one for the next pull, which reads it.
func (a *Agent) dropPartials(name string) {
	if err := a.store.DropPartials(name, 0); err != nil {
		a.log.Warn("remove partial downloads", "model", name, "err", err)
	}
}

// stateFor keeps rolled_back for a version reached by going back, instead of active.
func (a *Agent) stateFor(name string, st wire.State) wire.State {
	a.mu.Lock()
	defer a.mu.Unlock()
	if r := a.models[name]; r != nil && r.State == wire.StateRolledBack && st == wire.StateActive {
		return wire.StateRolledBack
	}
	return st
}

// adopt records what the active version m brought.
func (a *Agent) adopt(r *modelRecord, m wire.DesiredModel) {
	r.ActiveVersion, r.ManifestDigest = m.Version, m.ManifestDigest
	r.ContractDigest, r.ProfileDigest = m.ContractDigest, m.ProfileDigest
	r.OutputDigest = m.OutputDigest
	r.Dataset, r.DatasetVersion = m.Dataset, m.DatasetVersion
	r.RolloutID = m.RolloutID
}

// pullFailed reports a failed pull, or passes ctx's end and preemption through.
func (a *Agent) pullFailed(m wire.DesiredModel, err error) error {
	if errors.Is(err, errPreempted) || ctx(err) {
		return err
	}
	a.fail(m, err)
	if transient(err) {
		a.retry = true
	} else {
		a.dropPartials(m.Name)
	}
	return nil
}

func ctx(err error) bool {
	return errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}

func (a *Agent) fail(m wire.DesiredModel, err error) {
	a.log.Warn("model version not activated", "model", m.Name, "version", m.Version, "err", err)
	a.m.activations.WithLabelValues(ResultFailed).Inc()
	a.setState(m.Name, wire.StateFailed, func(r *modelRecord) { r.Target = m.Version; r.LastError = err.Error() })
	if modelstore.ValidName(m.Name) == nil {
		a.releasePins(m.Name)
	}
}

// manifest returns m's manifest, from the asset store or fetched, after checking its digest
// (the fetch verifies it), its form and its signature against the trusted keys.
func (a *Agent) manifest(ctx context.Context, m wire.DesiredModel, preempt func() bool) (artifact.Manifest, error) {
	b, err := a.asset(ctx, kindManifest, m.ManifestDigest, preempt)
	if err != nil {
		return artifact.Manifest{}, fmt.Errorf("fetch manifest: %w", err)
	}
	// The fetch checked that b hashes to m.ManifestDigest; the approval signature binds that
	// digest with the name, version, contract, profile and dataset version.
	if err := a.trust.ring().VerifyApproval(m.Approval(), m.ApprovalSignature); err != nil {
		reason := ReasonBadSignature
		switch {
		case errors.Is(err, artifact.ErrUnsigned):
			reason = ReasonUnsigned
		case errors.Is(err, artifact.ErrUnknownKey):
			reason = ReasonUnknownKey
		}
		a.reject(reason, "approval signature refused", "model", m.Name, "version", m.Version, "err", err)
		a.deleteAsset(m.ManifestDigest)
		return artifact.Manifest{}, fmt.Errorf("%w: %w", ErrRejected, err)
	}
	man, err := artifact.DecodeManifest(b)
	if err == nil && m.Size > 0 && man.Size != m.Size {
		err = fmt.Errorf("%w: manifest says %d bytes, desired %d", artifact.ErrBadManifest, man.Size, m.Size)
	}
	if err != nil {
		a.reject(ReasonBadManifest, "manifest refused", "model", m.Name, "version", m.Version, "err", err)
		a.deleteAsset(m.ManifestDigest)
		return artifact.Manifest{}, fmt.Errorf("%w: %w", ErrRejected, err)
	}
	return man, nil
}

// downloadAndStage brings name@version's file to disk as a staged version directory: into a
// resumable modelstore.Partial it writes the chunks this device already holds (fillLocal), then
// fetches the rest, writing each at its places as soon as it is verified, while hashLoop hashes
// the file's completed prefix; modelstore then keeps the file only if it hashes to man.Digest.
// err is the download's failure (the partial download stays on disk, to be resumed); staged is
// the staging's result. man is valid (a.manifest decoded it).
func (a *Agent) downloadAndStage(ctx context.Context, m wire.DesiredModel, man artifact.Manifest, preempt func() bool) (staged, err error) {
	p, done, err := a.store.OpenPartial(m.Name, m.Version, m.ManifestDigest, man.Digest, man.Size)
	if err != nil || done {
		return err, nil
	}
	as := newAssembly(p, man)
	reused, err := a.fillLocal(ctx, m.Name, m.Version, as)
	if err != nil {
		p.Close()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return err, nil
	}
	// What other partial downloads of this model held is in this one now.
	if err := a.store.DropPartials(m.Name, m.Version); err != nil {
		a.log.Warn("remove other partial downloads", "model", m.Name, "err", err)
	}
	a.m.chunksReused.Add(float64(reused))
	missing := as.missing()
	a.log.Info("downloading model", "model", m.Name, "version", m.Version, "chunks", len(man.Chunks), "missing", len(missing), "reused", reused, "bytes", man.Size, "resumed", p.Resumed())
	a.setState(m.Name, wire.StateDownloading, func(r *modelRecord) { r.BytesDone, r.BytesTotal = as.done(), man.Size })

	hashCtx, stopHash := context.WithCancel(ctx)
	defer stopHash()
	hashed := make(chan error, 1)
	go func() { hashed <- as.hashLoop(hashCtx) }()
	// Listen on the model's shared chunk topic for the pull only (issue 18).
	var shared *sharedSub
	if len(missing) > 0 {
		shared = a.conn.subscribeShared(ctx, m.Name)
		defer a.conn.unsubscribeShared(shared)
	}
	err = a.fetch.fetch(ctx, kindChunk, missing, func(d string, data []byte) error {
		err := as.put(d, data, -1)
		putPlainBuf(data)
		return err
	}, func(string) {
		a.m.fetchedChunks.Inc()
		a.progress(m.Name, as.done(), man.Size)
		if a.opts.OnChunk != nil {
			a.opts.OnChunk()
		}
	}, preempt, shared)
	if left := len(as.missing()); err == nil && left > 0 {
		err = fmt.Errorf("download of %s@%d ended with %d chunks missing", m.Name, m.Version, left)
	}
	if err != nil {
		stopHash()
		<-hashed
		p.Close()
		return nil, err
	}
	if err := <-hashed; err != nil {
		p.Discard() // unreadable: the retry starts over
		return err, nil
	}
	return p.Commit(ctx), nil
}

// fetchAssets makes sure the contract and reference profile m names are in the asset store.
func (a *Agent) fetchAssets(ctx context.Context, m wire.DesiredModel, preempt func() bool) error {
	for _, d := range []string{m.ContractDigest, m.ProfileDigest, m.OutputDigest} {
		if d == "" {
			continue
		}
		if _, err := a.asset(ctx, kindAsset, d, preempt); err != nil {
			return fmt.Errorf("fetch contract or profile %s: %w", d, err)
		}
	}
	return nil
}

// releasePins unpins every set of name except those of its current and previous versions.
func (a *Agent) releasePins(name string) {
	keep := map[string]bool{}
	if v, err := a.store.Current(name); err == nil {
		keep[pinName(name, v.Version)] = true
	}
	if v, err := a.store.Previous(name); err == nil {
		keep[pinName(name, v.Version)] = true
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	r := a.models[name]
	if r == nil {
		return
	}
	var kept []string
	for _, p := range r.Pins {
		if keep[p] {
			kept = append(kept, p)
			continue
		}
		if err := a.cache.Unpin(p); err != nil {
			a.log.Warn("unpin", "set", p, "err", err)
			kept = append(kept, p)
		}
	}
	r.Pins = kept
	if err := a.saveRecordLocked(name); err != nil {
		a.log.Error("persist model record", "model", name, "err", err)
	}
}

// deactivate handles a model no longer in the desired state: the chunks of its current and
// previous versions go into the chunk cache (until evicted: assigning it again costs little),
// its directory is renamed away (so current disappears in one step) and deleted, its chunks
// unpinned, its record dropped.
func (a *Agent) deactivate(name string) {
	a.log.Info("model removed from desired state: deactivating", "model", name)
	if modelstore.ValidName(name) == nil {
		dir := filepath.Join(a.store.Dir(), name)
		if _, err := os.Stat(dir); err == nil {
			for _, get := range []func(string) (modelstore.Version, error){a.store.Current, a.store.Previous} {
				if ver, err := get(name); err == nil {
					a.keepChunks(ver, nil)
				}
			}
			b := make([]byte, 4)
			_, _ = rand.Read(b)
			trash := filepath.Join(a.store.Dir(), ".removed-"+name+"-"+hex.EncodeToString(b))
			if err := os.Rename(dir, trash); err != nil {
				a.log.Error("deactivate model", "model", name, "err", err)
				return
			}
			if err := os.RemoveAll(trash); err != nil {
				a.log.Warn("remove deactivated model", "model", name, "err", err)
			}
		}
	}
	a.mu.Lock()
	r := a.models[name]
	delete(a.models, name)
	err := a.saveRecordLocked(name)
	a.mu.Unlock()
	if err != nil {
		a.log.Error("drop model record", "model", name, "err", err)
	}
	if r != nil {
		for _, p := range r.Pins {
			if err := a.cache.Unpin(p); err != nil {
				a.log.Warn("unpin", "set", p, "err", err)
			}
		}
	}
}

// asset returns the object digest from the asset store, fetching and storing it when absent.
// The fetch verifies the digest.
func (a *Agent) asset(ctx context.Context, kind objectKind, digest string, preempt func() bool) ([]byte, error) {
	key := []byte(digest)
	b, err := a.assets.Get(key)
	if err == nil && artifact.DigestOf(b) == digest {
		return b, nil
	}
	if err != nil && !errors.Is(err, state.ErrNotFound) {
		return nil, err
	}
	var got []byte
	err = a.fetch.fetch(ctx, kind, []string{digest}, func(_ string, data []byte) error {
		got = append([]byte(nil), data...)
		return a.assets.Set(key, got)
	}, func(string) {}, preempt, nil)
	if err != nil {
		return nil, err
	}
	return got, nil
}

func (a *Agent) deleteAsset(digest string) {
	if err := a.assets.Delete([]byte(digest)); err != nil {
		a.log.Warn("delete asset", "digest", digest, "err", err)
	}
}

// gcAssets deletes manifests, contracts and profiles no model record and no version on disk
// refers to.
func (a *Agent) gcAssets() {
	keep := map[string]bool{}
	a.mu.Lock()
	names := make([]string, 0, len(a.models))
	for n, r := range a.models {
		names = append(names, n)
		for _, d := range []string{r.ManifestDigest, r.ContractDigest, r.ProfileDigest, r.OutputDigest} {
			keep[d] = true
		}
	}
	a.mu.Unlock()
	for _, n := range names {
		if v, err := a.store.Current(n); err == nil {
			keep[v.ManifestDigest] = true
		}
		if v, err := a.store.Previous(n); err == nil {
			keep[v.ManifestDigest] = true
		}
		// A partial download kept for a retry or the next pull is read with its manifest.
		if ps, err := a.store.Partials(n); err == nil {
			for _, p := range ps {
				keep[p.ManifestDigest] = true
			}
		}
	}
	var drop [][]byte
	err := a.assets.IterateKeys(false, func(k []byte, _ int64) error {
		if !keep[string(k)] {
			drop = append(drop, append([]byte(nil), k...))
		}
		return nil
	})
	if err != nil {
		a.log.Warn("list assets", "err", err)
		return
	}
	for _, k := range drop {
		if err := a.assets.Delete(k); err != nil {
			a.log.Warn("delete asset", "err", err)
		}
	}
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}
