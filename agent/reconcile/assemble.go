package reconcile

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"sync"

	"github.com/driftline/driftline/agent/chunkcache"
	"github.com/driftline/driftline/agent/modelstore"
	"github.com/driftline/driftline/shared/artifact"
)

// assembly writes the chunks of a manifest into a modelstore.Partial at their offsets, in
// whatever order they come, and hashes the file in order as its prefix completes (hashLoop):
// the whole-file check overlaps the download, and a chunk is on disk, where a restart finds it,
// as soon as it is verified. Every byte given to put must already be verified against its
// digest. Safe for concurrent use, except hashLoop and scan, which run on one goroutine each.
type assembly struct {
	p    *modelstore.Partial
	man  artifact.Manifest
	off  []int64          // offset of each chunk of man in the file
	at   map[string][]int // digest -> its indexes in man.Chunks (a chunk may repeat)
	wake chan struct{}    // a put happened (capacity 1: hashLoop looks again)

	mu    sync.Mutex
	held  map[string]bool // digests written at every place man gives them
	bytes int64           // file bytes written, repeats counted
}

func newAssembly(p *modelstore.Partial, man artifact.Manifest) *assembly {
	as := &assembly{
		p: p, man: man, off: man.Offsets(), at: make(map[string][]int, len(man.Chunks)),
		wake: make(chan struct{}, 1), held: make(map[string]bool, len(man.Chunks)),
	}
	for i, c := range man.Chunks {
		as.at[c.Digest] = append(as.at[c.Digest], i)
	}
	return as
}

// holds reports whether digest is written everywhere the manifest places it.
func (as *assembly) holds(digest string) bool {
	as.mu.Lock()
	defer as.mu.Unlock()
	return as.held[digest]
}

// missing returns, in manifest order and without repeats, the digests not yet written.
func (as *assembly) missing() []string {
	as.mu.Lock()
	defer as.mu.Unlock()
	return artifact.Missing(as.man, func(d string) bool { return as.held[d] })
}

// done returns the file bytes written so far.
func (as *assembly) done() int64 {
	as.mu.Lock()
	defer as.mu.Unlock()
	return as.bytes
}

// put writes plain, verified against digest, at every place the manifest gives digest, except
// at index skip (-1: none), which already holds it.
func (as *assembly) put(digest string, plain []byte, skip int) error {
	if as.holds(digest) {
		return nil
	}
	for _, i := range as.at[digest] {
		if i == skip {
			continue
		}
		if int64(len(plain)) != as.man.Chunks[i].Size {
			return fmt.Errorf("%w: %s is %d bytes, its place %d", artifact.ErrChunkSize, digest, len(plain), as.man.Chunks[i].Size)
		}
		if err := as.p.WriteAt(plain, as.off[i]); err != nil {
			return err
		}
	}
	as.mu.Lock()
	if !as.held[digest] {
		as.held[digest] = true
		as.bytes += int64(len(plain) * len(as.at[digest]))
	}
	as.mu.Unlock()
	select {
	case as.wake <- struct{}{}:
	default:
	}
	return nil
}

// hashLoop feeds the file hash with the written prefix of the file as it grows, until the whole
// file is hashed or ctx ends. It is the Partial's only HashThrough caller before Commit.
func (as *assembly) hashLoop(ctx context.Context) error {
	next := 0
	for {
		as.mu.Lock()
		for next < len(as.man.Chunks) && as.held[as.man.Chunks[next].Digest] {
			next++
		}
		as.mu.Unlock()
		end := as.man.Size
		if next < len(as.man.Chunks) {
			end = as.off[next]
		}
		if err := as.p.HashThrough(ctx, end); err != nil {
			return err
		}
		if next == len(as.man.Chunks) {
			return nil
		}
		select {
		case <-as.wake:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// scan finds the chunks a resumed Partial already holds: each place is read back and hashed
// (what an earlier run wrote is not trusted, and a crash may have lost unsynced pages). A
// repeated chunk found at one place is written again at the others. It returns how many
// distinct chunks it found.
func (as *assembly) scan(ctx context.Context, buf []byte) (found int, err error) {
	for i, c := range as.man.Chunks {
		if err := ctx.Err(); err != nil {
			return found, err
		}
		if as.holds(c.Digest) {
			continue
		}
		b := buf[:c.Size]
		if _, err := as.p.ReadAt(b, as.off[i]); err != nil || !matches(b, c.Digest) {
			continue // not there, or unreadable: fetched and written again
		}
		if err := as.put(c.Digest, b, i); err != nil {
			return found, err
		}
		found++
	}
	return found, nil
}

// matches reports whether b hashes to digest.
func matches(b []byte, digest string) bool {
	s, err := artifact.ParseDigest(digest)
	return err == nil && sha256.Sum256(b) == s
}

// seed is a local file holding chunks at known places: the current or previous version of the
// model, or another version's partial download. Its bytes are verified as they are read.
type seed struct {
	path string
	at   map[string]place // digest -> its first place in the file
}

// place is where a chunk sits in a file.
type place struct{ off, size int64 }

// seeds returns the local files that may hold chunks of name@v: its current and previous
// versions and the partial downloads of its other versions, whose manifests are in the asset
// store. A file whose manifest is not there is skipped.
func (rc *Reconciler) seeds(name string, v int) []seed {
	type file struct{ path, manifest string }
	var files []file
	for _, get := range []func(string) (modelstore.Version, error){rc.store.Current, rc.store.Previous} {
		if ver, err := get(name); err == nil && ver.Version != v {
			files = append(files, file{ver.Path, ver.ManifestDigest})
		}
	}
	if ps, err := rc.store.Partials(name); err == nil {
		for _, p := range ps {
			if p.Version != v {
				files = append(files, file{p.Path, p.ManifestDigest})
			}
		}
	}
	var out []seed
	for _, f := range files {
		man, ok := rc.storedManifest(f.manifest)
		if !ok {
			continue
		}
		sd := seed{path: f.path, at: make(map[string]place, len(man.Chunks))}
		offs := man.Offsets()
		for i, c := range man.Chunks {
			if _, ok := sd.at[c.Digest]; !ok {
				sd.at[c.Digest] = place{offs[i], c.Size}
			}
		}
		out = append(out, sd)
	}
	return out
}

// fillLocal writes into as every chunk this device already holds, so that only the rest is
// fetched: what a resumed partial download holds, then the chunks in the seeds (the model's
// other versions on disk and other partial downloads), then the chunk cache. Each is verified
// on the way; one that fails or cannot be read is simply fetched. It returns how many distinct
// chunks it reused. Only a write into the partial file, or ctx's end, fails it.
//
// Its read buffer (a chunk's largest size) is allocated only when there is a file to read: a
// device's first pull of a model, the common case, reads nothing locally.
func (rc *Reconciler) fillLocal(ctx context.Context, name string, v int, as *assembly) (reused int, err error) {
	var buf []byte
	if as.p.Resumed() {
		buf = make([]byte, artifact.MaxChunkSize)
		if reused, err = as.scan(ctx, buf); err != nil {
			return reused, err
		}
	}
	need := as.missing()
	if len(need) == 0 {
		return reused, nil
	}
	for _, sd := range rc.seeds(name, v) {
		f, err := os.Open(sd.path)
		if err != nil {
			continue
		}
		if buf == nil {
			buf = make([]byte, artifact.MaxChunkSize)
		}
		for _, d := range need {
			c, ok := sd.at[d]
			if !ok || as.holds(d) {
				continue
			}
			b := buf[:c.size]
			if _, err := f.ReadAt(b, c.off); err != nil || !matches(b, d) {
				continue
			}
			if err := as.put(d, b, -1); err != nil {
				f.Close()
				return reused, err
			}
			reused++
		}
		f.Close()
		if err := ctx.Err(); err != nil {
			return reused, err
		}
	}
	for _, d := range need {
		if as.holds(d) || !rc.cache.Has(d) {
			continue
		}
		b, err := rc.cache.Get(d) // verified on the way out; a corrupt copy is dropped
		if errors.Is(err, chunkcache.ErrNotFound) {
			continue
		}
		if err != nil {
			rc.log.Warn("chunk cache read failed: fetching the chunk", "digest", d, "err", err)
			continue
		}
		if err := as.put(d, b, -1); err != nil {
			return reused, err
		}
		reused++
	}
	return reused, nil
}

// KeepChunks puts the chunks of version ver, whose directory is about to be deleted, into the
// chunk cache (modelstore.Options.BeforeRemove), except those the kept versions' files hold:
// assigning it again, or a version that shares its content, then costs little. It never takes
// the cache over its cap (PutIfRoom), whatever the pins, and stops at the first chunk that does
// not fit; least recently used chunks are evicted for the rest. Failures are logged: the chunks
// can always be fetched again.
func (rc *Reconciler) KeepChunks(ver modelstore.Version, kept []modelstore.Version) {
	man, ok := rc.storedManifest(ver.ManifestDigest)
	if !ok {
		return
	}
	onDisk := map[string]bool{}
	for _, k := range kept {
		if km, ok := rc.storedManifest(k.ManifestDigest); ok {
			for _, c := range km.Chunks {
				onDisk[c.Digest] = true
			}
		}
	}
	f, err := os.Open(ver.Path)
	if err != nil {
		return
	}
	defer f.Close()
	buf := make([]byte, artifact.MaxChunkSize)
	offs := man.Offsets()
	stored := 0
	for i, c := range man.Chunks {
		if onDisk[c.Digest] || rc.cache.Has(c.Digest) {
			continue
		}
		b := buf[:c.Size]
		if _, err := f.ReadAt(b, offs[i]); err != nil {
			rc.log.Warn("keep chunks of a removed version", "model", ver.Name, "version", ver.Version, "err", err)
			break
		}
		if err := rc.cache.PutIfRoom(c.Digest, b); err != nil {
			if !errors.Is(err, chunkcache.ErrNoRoom) && !errors.Is(err, chunkcache.ErrTooLarge) {
				rc.log.Warn("keep chunks of a removed version", "model", ver.Name, "version", ver.Version, "err", err)
			}
			break
		}
		stored++
	}
	rc.log.Info("chunks of a removed version kept in the cache", "model", ver.Name, "version", ver.Version, "chunks", stored)
}

// storedManifest returns the manifest named digest from the asset store, when it is there and
// intact. It only says where chunks may sit in a local file: what is read there is hashed
// against the digests of the manifest being pulled.
func (rc *Reconciler) storedManifest(digest string) (artifact.Manifest, bool) {
	b, err := rc.assets.Get([]byte(digest))
	if err != nil || artifact.DigestOf(b) != digest {
		return artifact.Manifest{}, false
	}
	man, err := artifact.DecodeManifest(b)
	return man, err == nil
}
