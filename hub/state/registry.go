package state

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/dgraph-io/badger/v4"

	"github.com/driftline/driftline/hub/command"
)

func datasetCreate(txn *badger.Txn, env command.Envelope, c DatasetCreate) (any, *auditNote, error) {
	if !ValidName(c.Name) {
		return nil, nil, invalid("dataset name %q: use 1-128 letters, digits, '.', '_' or '-'", c.Name)
	}
	if ok, err := exists(txn, nameKey(pDataset, c.Name)); err != nil || ok {
		if err != nil {
			return nil, nil, err
		}
		return nil, nil, existsErr("dataset %s", c.Name)
	}
	d := Dataset{Name: c.Name, Description: c.Description, CreatedBy: env.Actor, CreatedAt: env.Time}
	if err := putJSON(txn, nameKey(pDataset, c.Name), d); err != nil {
		return nil, nil, err
	}
	return d, &auditNote{"dataset.create", "dataset:" + c.Name, ""}, nil
}

func datasetVersionCreate(txn *badger.Txn, env command.Envelope, c DatasetVersionCreate) (any, *auditNote, error) {
	var d Dataset
	if err := getJSON(txn, nameKey(pDataset, c.Dataset), &d); err != nil {
		if errors.Is(err, ErrNotFound) {
			return nil, nil, notFound("dataset %s", c.Dataset)
		}
		return nil, nil, err
	}
	for _, p := range c.Parents {
		name := p.Dataset
		if name == "" {
			name = c.Dataset
		}
		if ok, err := exists(txn, versionKey(pDatasetVersion, name, p.Version)); err != nil || !ok {
			if err != nil {
				return nil, nil, err
			}
			return nil, nil, invalid("parent dataset:%s@%d does not exist", name, p.Version)
		}
	}
	d.LatestVersion++
	v := DatasetVersion{
		Dataset: c.Dataset, Version: d.LatestVersion, Contract: c.Contract, ContractHash: c.ContractHash,
		Profile: c.Profile, ProfileDigest: c.ProfileDigest, SampleSHA256: c.SampleSHA256,
		SampleBytes: c.SampleBytes, SampleRows: c.SampleRows, InvalidRows: c.InvalidRows,
		SourceURI: c.SourceURI, Parents: c.Parents, Notes: c.Notes, CreatedBy: env.Actor, CreatedAt: env.Time,
	}
	if err := putJSON(txn, nameKey(pDataset, c.Dataset), d); err != nil {
		return nil, nil, err
	}
	if err := putJSON(txn, versionKey(pDatasetVersion, c.Dataset, v.Version), v); err != nil {
		return nil, nil, err
	}
	if c.ContractHash != "" {
		if err := putJSON(txn, nameKey(pObject, c.ContractHash), ObjectRef{Kind: ObjectContract, Name: c.Dataset, Version: v.Version}); err != nil {
			return nil, nil, err
		}
	}
	if c.ProfileDigest != "" {
		if err := putJSON(txn, nameKey(pObject, c.ProfileDigest), ObjectRef{Kind: ObjectProfile, Name: c.Dataset, Version: v.Version}); err != nil {
			return nil, nil, err
		}
	}
	node := DatasetNode(c.Dataset, v.Version)
	if err := putNode(txn, LineageNode{ID: node, Kind: KindDataset}); err != nil {
		return nil, nil, err
	}
	for _, p := range c.Parents {
		name := p.Dataset
		if name == "" {
			name = c.Dataset
		}
		if err := putEdge(txn, LineageEdge{From: node, To: DatasetNode(name, p.Version), Kind: EdgeDerivedFrom, Since: env.Time}); err != nil {
			return nil, nil, err
		}
	}
	return v, &auditNote{"dataset.version.create", node, c.SampleSHA256}, nil
}

func modelCreate(txn *badger.Txn, env command.Envelope, c ModelCreate) (any, *auditNote, error) {
	if !ValidName(c.Name) {
		return nil, nil, invalid("model name %q: use 1-128 letters, digits, '.', '_' or '-'", c.Name)
	}
	if ok, err := exists(txn, nameKey(pModel, c.Name)); err != nil || ok {
		if err != nil {
			return nil, nil, err
		}
		return nil, nil, existsErr("model %s", c.Name)
	}
	m := Model{Name: c.Name, Description: c.Description, CreatedBy: env.Actor, CreatedAt: env.Time, Aliases: map[string]int{}}
	if err := putJSON(txn, nameKey(pModel, c.Name), m); err != nil {
		return nil, nil, err
	}
	return m, &auditNote{"model.create", "model:" + c.Name, ""}, nil
}

// ChunkPutResult says how many chunks a ChunksPut stored and how many were already there.
type ChunkPutResult struct {
	Stored  int `json:"stored"`
	Present int `json:"present"`
}

// chunksPut stores the chunks an upload sends ahead of its version. A chunk no version lists yet
// is marked pending with the command's time (a present pending chunk gets the new time: another
// upload needs it), so that ChunksSweep can delete what an aborted upload left; the version's
// create clears the marks.
func chunksPut(txn *badger.Txn, env command.Envelope, c ChunksPut) (any, *auditNote, error) {
	for _, ch := range c.Chunks {
		if !strings.HasPrefix(ch.Digest, "sha256:") || len(ch.Digest) != 71 || len(ch.Zstd) == 0 {
			return nil, nil, invalid("chunk %q: bad digest or empty body", ch.Digest)
		}
	}
	stamp := strconv.AppendInt(nil, env.Time, 10)
	var res ChunkPutResult
	for _, ch := range c.Chunks {
		ok, err := exists(txn, nameKey(pChunk, ch.Digest))
		if err != nil {
			return nil, nil, err
		}
		if ok {
			res.Present++
			if pending, err := exists(txn, nameKey(pChunkPending, ch.Digest)); err != nil {
				return nil, nil, err
			} else if pending {
				if err := txn.Set(nameKey(pChunkPending, ch.Digest), stamp); err != nil {
					return nil, nil, err
				}
			}
			continue
		}
		if err := txn.Set(nameKey(pChunk, ch.Digest), ch.Zstd); err != nil {
			return nil, nil, err
		}
		if err := txn.Set(nameKey(pChunkPending, ch.Digest), stamp); err != nil {
			return nil, nil, err
		}
		res.Stored++
	}
	return res, nil, nil
}

// ChunksSwept answers a ChunksSweep: how many chunks it deleted and their stored (compressed)
// bytes.
type ChunksSwept struct {
	Deleted int   `json:"deleted"`
	Bytes   int64 `json:"bytes"`
}

// chunksSweep deletes the pending chunks (no version lists them) stored before c.Before.
func chunksSweep(txn *badger.Txn, c ChunksSweep) (any, *auditNote, error) {
	var stale [][]byte
	var bytes int64
	it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(pChunkPending)})
	for it.Rewind(); it.Valid(); it.Next() {
		err := it.Item().Value(func(v []byte) error {
			at, err := strconv.ParseInt(string(v), 10, 64)
			if err != nil || at < c.Before {
				stale = append(stale, it.Item().KeyCopy(nil))
			}
			return nil
		})
		if err != nil {
			it.Close()
			return nil, nil, err
		}
	}
	it.Close()
	for _, k := range stale {
		digest := strings.TrimPrefix(string(k), pChunkPending)
		if item, err := txn.Get(nameKey(pChunk, digest)); err == nil {
			// ValueSize is approximate; the metric counts the stored bytes exactly.
			if err := item.Value(func(v []byte) error { bytes += int64(len(v)); return nil }); err != nil {
				return nil, nil, err
			}
		} else if !errors.Is(err, badger.ErrKeyNotFound) {
			return nil, nil, err
		}
		if err := txn.Delete(k); err != nil {
			return nil, nil, err
		}
		if err := txn.Delete(nameKey(pChunk, digest)); err != nil {
			return nil, nil, err
		}
	}
	var note *auditNote
	if len(stale) > 0 {
		note = &auditNote{"chunks.sweep", "", strconv.Itoa(len(stale))}
	}
	return ChunksSwept{Deleted: len(stale), Bytes: bytes}, note, nil
}

// ChunksMarked answers a ChunksOrphanMark: how many unlisted chunks it marked pending.
type ChunksMarked struct {
	Marked int `json:"marked"`
}

// chunksOrphanMark marks as pending (at env.Time) every stored chunk that carries no pending mark
// and that no model version lists, neither in its manifest nor in its document (versions of
// older builds). A manifest it cannot read stops it without a change: it must never mark a
// chunk a version needs.
func chunksOrphanMark(txn *badger.Txn, env command.Envelope) (any, *auditNote, error) {
	listed := map[string]bool{}
	var chunkList struct {
		Chunks []struct {
			Digest string `json:"digest"`
		} `json:"chunks"`
	}
	scan := func(prefix string, f func(key, val []byte) error) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(prefix), PrefetchValues: false})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			k := it.Item().KeyCopy(nil)
			if err := it.Item().Value(func(v []byte) error { return f(k, v) }); err != nil {
				return err
			}
		}
		return nil
	}
	collect := func(key, val []byte) error {
		chunkList.Chunks = chunkList.Chunks[:0]
		if err := json.Unmarshal(val, &chunkList); err != nil {
			return fmt.Errorf("chunk list of %s: %w", key, err)
		}
		for _, c := range chunkList.Chunks {
			listed[c.Digest] = true
		}
		return nil
	}
	if err := scan(pManifest, collect); err != nil {
		return nil, nil, err
	}
	if err := scan(pModelVersion, collect); err != nil {
		return nil, nil, err
	}
	var orphans [][]byte
	it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(pChunk), PrefetchValues: false})
	for it.Rewind(); it.Valid(); it.Next() {
		digest := strings.TrimPrefix(string(it.Item().Key()), pChunk)
		if listed[digest] {
			continue
		}
		pending, err := exists(txn, nameKey(pChunkPending, digest))
		if err != nil {
			it.Close()
			return nil, nil, err
		}
		if !pending {
			orphans = append(orphans, nameKey(pChunkPending, digest))
		}
	}
	it.Close()
	stamp := strconv.AppendInt(nil, env.Time, 10)
	for _, k := range orphans {
		if err := txn.Set(k, stamp); err != nil {
			return nil, nil, err
		}
	}
	var note *auditNote
	if len(orphans) > 0 {
		note = &auditNote{"chunks.orphans", "", strconv.Itoa(len(orphans))}
	}
	return ChunksMarked{Marked: len(orphans)}, note, nil
}

func getModelVersion(txn *badger.Txn, model string, version int) (ModelVersion, error) {
	var mv ModelVersion
	if err := getJSON(txn, versionKey(pModelVersion, model, version), &mv); err != nil {
		if errors.Is(err, ErrNotFound) {
			return mv, notFound("model:%s@%d", model, version)
		}
		return mv, err
	}
	return mv, nil
}

func modelVersionCreate(txn *badger.Txn, env command.Envelope, c ModelVersionCreate) (any, *auditNote, error) {
	var m Model
	if err := getJSON(txn, nameKey(pModel, c.Model), &m); err != nil {
		if errors.Is(err, ErrNotFound) {
			return nil, nil, notFound("model %s", c.Model)
		}
		return nil, nil, err
	}
	if !strings.HasPrefix(c.Digest, "sha256:") || c.Size < 0 {
		return nil, nil, invalid("model version needs a sha256 digest and a size")
	}
	for k, v := range c.Tags {
		if err := validTagKey(k); err != nil {
			return nil, nil, err
		}
		if v == "" {
			delete(c.Tags, k)
		}
	}
	var total int64
	for _, ch := range c.Chunks {
		ok, err := exists(txn, nameKey(pChunk, ch.Digest))
		if err != nil {
			return nil, nil, err
		}
		if !ok {
			return nil, nil, invalid("chunk %s of the artifact is not stored", ch.Digest)
		}
		total += ch.Size
	}
	if total != c.Size {
		return nil, nil, invalid("chunks add up to %d bytes, artifact size is %d", total, c.Size)
	}
	for _, t := range c.TrainedOn {
		if ok, err := exists(txn, versionKey(pDatasetVersion, t.Dataset, t.Version)); err != nil || !ok {
			if err != nil {
				return nil, nil, err
			}
			return nil, nil, invalid("trained_on: dataset:%s@%d does not exist", t.Dataset, t.Version)
		}
	}
	m.LatestVersion++
	mv := ModelVersion{
		Model: c.Model, Version: m.LatestVersion, Digest: c.Digest, Size: c.Size, Format: c.Format,
		Filename: c.Filename, Chunks: c.Chunks, Manifest: c.Manifest, ManifestDigest: c.ManifestDigest,
		Metrics: c.Metrics, Params: c.Params, CodeRef: c.CodeRef, TrainedOn: c.TrainedOn,
		Status: StatusRegistered, Approvals: []Approval{}, Tags: c.Tags, CreatedBy: env.Actor, CreatedByToken: c.TokenID, CreatedAt: env.Time,
	}
	if mv.TrainedOn == nil {
		mv.TrainedOn = []VersionRef{}
	}
	if err := putJSON(txn, nameKey(pModel, c.Model), m); err != nil {
		return nil, nil, err
	}
	mv.ChunkCount = len(c.Chunks)
	doc := mv
	doc.Chunks, doc.Manifest, doc.Tags = nil, nil, nil
	if len(c.Tags) > 0 {
		if err := txn.Set(versionKey(pVersionTags, c.Model, mv.Version), encodeTags(c.Tags)); err != nil {
			return nil, nil, err
		}
	}
	if err := putJSON(txn, versionKey(pModelVersion, c.Model, mv.Version), doc); err != nil {
		return nil, nil, err
	}
	if err := txn.Set(versionKey(pManifest, c.Model, mv.Version), c.Manifest); err != nil {
		return nil, nil, err
	}
	if c.ManifestDigest != "" {
		if err := putJSON(txn, nameKey(pObject, c.ManifestDigest), ObjectRef{Kind: ObjectManifest, Name: c.Model, Version: mv.Version}); err != nil {
			return nil, nil, err
		}
	}
	node := ModelNode(c.Model, mv.Version)
	if err := putNode(txn, LineageNode{ID: node, Kind: KindModel, Attr: map[string]any{"digest": c.Digest}}); err != nil {
		return nil, nil, err
	}
	for _, t := range c.TrainedOn {
		if err := putEdge(txn, LineageEdge{From: node, To: DatasetNode(t.Dataset, t.Version), Kind: EdgeTrainedOn, Since: env.Time}); err != nil {
			return nil, nil, err
		}
	}
	for _, ch := range c.Chunks { // listed by a version now: no longer the sweep's
		if err := txn.Delete(nameKey(pChunkPending, ch.Digest)); err != nil {
			return nil, nil, err
		}
	}
	return mv, &auditNote{"model.version.create", node, c.Digest}, nil
}

// sameIdentity reports whether two acts were made by the same token: by token id when both
// recorded one (names are not unique), else, for entries from before ids were recorded, by
// actor name.
func sameIdentity(tokenA, nameA, tokenB, nameB string) bool {
	if tokenA != "" && tokenB != "" {
		return tokenA == tokenB
	}
	return nameA == nameB
}

func modelVersionApprove(txn *badger.Txn, env command.Envelope, c ModelVersionApprove) (any, *auditNote, error) {
	mv, err := getModelVersion(txn, c.Model, c.Version)
	if err != nil {
		return nil, nil, err
	}
	switch {
	case mv.Status == StatusDeprecated:
		return nil, nil, conflict("model:%s@%d is deprecated", c.Model, c.Version)
	case c.FourEyes && sameIdentity(mv.CreatedByToken, mv.CreatedBy, c.TokenID, env.Actor):
		return nil, nil, conflict("four-eyes: the token that registered model:%s@%d (%s) cannot approve it", c.Model, c.Version, env.Actor)
	case !c.Signature.valid() && !c.Approval.valid():
		return nil, nil, invalid("approval needs a signature")
	}
	for _, a := range mv.Approvals {
		if sameIdentity(a.ByToken, a.By, c.TokenID, env.Actor) {
			return nil, nil, conflict("%s already approved model:%s@%d", env.Actor, c.Model, c.Version)
		}
	}
	tags, err := versionTags(txn, c.Model, c.Version, mv.Tags) // for the result
	if err != nil {
		return nil, nil, err
	}
	mv.Status = StatusApproved
	mv.Approvals = append(mv.Approvals, Approval{By: env.Actor, ByToken: c.TokenID, At: env.Time, Comment: c.Comment})
	if c.Signature.valid() {
		legacy := c.Signature
		legacy.Kind = ""
		mv.Signatures = addSignature(mv.Signatures, legacy)
	}
	if c.Approval.valid() {
		approval := c.Approval
		approval.Kind = SigApproval
		mv.Signatures = addSignature(mv.Signatures, approval)
	}
	if err := putJSON(txn, versionKey(pModelVersion, c.Model, c.Version), mv); err != nil {
		return nil, nil, err
	}
	mv.Tags = tags
	return mv, &auditNote{"model.version.approve", ModelNode(c.Model, c.Version), c.Comment}, nil
}

// valid reports whether s names a key and carries a signature.
func (s Signature) valid() bool { return s.KeyID != "" && s.Sig != "" }

// addSignature puts s into list, replacing the one of the same key and kind (a fresh cluster's
// first online key is its first leader's node key: one key signs both kinds).
func addSignature(list []Signature, s Signature) []Signature {
	for i, have := range list {
		if have.KeyID == s.KeyID && have.Kind == s.Kind {
			list[i] = s
			return list
		}
	}
	return append(list, s)
}

func modelVersionDeprecate(txn *badger.Txn, c ModelVersionDeprecate) (any, *auditNote, error) {
	mv, err := getModelVersion(txn, c.Model, c.Version)
	if err != nil {
		return nil, nil, err
	}
	tags, err := versionTags(txn, c.Model, c.Version, mv.Tags) // for the result
	if err != nil {
		return nil, nil, err
	}
	if mv.Status == StatusDeprecated {
		mv.Tags = tags
		return mv, nil, nil
	}
	mv.Status = StatusDeprecated
	if err := putJSON(txn, versionKey(pModelVersion, c.Model, c.Version), mv); err != nil {
		return nil, nil, err
	}
	if err := addRevoked(txn, c.Model, c.Version); err != nil {
		return nil, nil, err
	}
	mv.Tags = tags
	return mv, &auditNote{"model.version.deprecate", ModelNode(c.Model, c.Version), c.Comment}, nil
}

// AliasResult is the answer to an alias move.
type AliasResult struct {
	Model    string `json:"model"`
	Alias    string `json:"alias"`
	Version  int    `json:"version"`
	Previous int    `json:"previous,omitempty"`
}

func aliasSet(txn *badger.Txn, c AliasSet) (any, *auditNote, error) {
	if !ValidName(c.Alias) {
		return nil, nil, invalid("alias %q: use 1-128 letters, digits, '.', '_' or '-'", c.Alias)
	}
	var m Model
	if err := getJSON(txn, nameKey(pModel, c.Model), &m); err != nil {
		if errors.Is(err, ErrNotFound) {
			return nil, nil, notFound("model %s", c.Model)
		}
		return nil, nil, err
	}
	if c.Version < 0 {
		return nil, nil, invalid("version must be positive (0 deletes the alias)")
	}
	if c.Version > 0 {
		mv, err := getModelVersion(txn, c.Model, c.Version)
		if err != nil {
			return nil, nil, err
		}
		if mv.Status == StatusDeprecated {
			return nil, nil, conflict("model:%s@%d is deprecated", c.Model, c.Version)
		}
	}
	if m.Aliases == nil {
		m.Aliases = map[string]int{}
	}
	res := AliasResult{Model: c.Model, Alias: c.Alias, Version: c.Version, Previous: m.Aliases[c.Alias]}
	if c.Version == 0 {
		delete(m.Aliases, c.Alias)
	} else {
		m.Aliases[c.Alias] = c.Version
	}
	if err := putJSON(txn, nameKey(pModel, c.Model), m); err != nil {
		return nil, nil, err
	}
	return res, &auditNote{"model.alias.set", "model:" + c.Model, fmt.Sprintf("%s=%d", c.Alias, c.Version)}, nil
}

// SweepChunksPerCommand bounds the chunks one ChunksSweep deletes, as the leader proposes it
// (ChunkSweepCutoff): two deletes a chunk, well inside one transaction of the hub's state
// machine (shared/kv State: 26,214 writes), whatever an aborted upload left (a 4 GiB upload is
// 65,536 chunks).
const SweepChunksPerCommand = 4096

// ChunkSweepCutoff returns the time a ChunksSweep should sweep before so that it deletes at most
// limit of the chunks pending since before `before` (Unix ms), the oldest first, and whether it
// then covers all of them. When more than limit chunks share the oldest time (one upload batch)
// they go together. ChunksSweep also deletes marks it cannot read; they count here.
func (r Reader) ChunkSweepCutoff(before int64, limit int) (cutoff int64, all bool, err error) {
	var times []int64
	err = r.DB.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(pChunkPending)})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			err := it.Item().Value(func(v []byte) error {
				at, err := strconv.ParseInt(string(v), 10, 64)
				if err != nil {
					at = math.MinInt64
				}
				if at < before {
					times = append(times, at)
				}
				return nil
			})
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil || len(times) <= limit {
		return before, true, err
	}
	slices.Sort(times)
	cutoff = times[limit] // fewer than limit+1 chunks are older than the (limit+1)th oldest
	if cutoff == times[0] {
		cutoff++ // the oldest batch alone holds more than limit: it goes whole
	}
	return cutoff, false, nil
}
