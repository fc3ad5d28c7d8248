package kv

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"
	"github.com/dgraph-io/badger/v4/table"
	"github.com/dgraph-io/ristretto/v2/z"
)

// ErrDamaged marks a database directory whose files do not describe a whole database.
var ErrDamaged = errors.New("kv: database damaged")

// checkManifest reads dir's MANIFEST as badger will and compares the tables it describes with the
// table files present. badger itself accepts a MANIFEST cut short (it stops at the first
// incomplete record) and deletes the table files it does not mention, and a MANIFEST that names
// a missing file fails deep in its start-up: either way a damaged directory would open as a
// database missing part of its data. The hub refuses to start on it instead, naming the file.
//
// A MANIFEST that ends in an incomplete record whose tables are all present is what a crash
// during an append leaves, and is accepted (badger drops the record). One that ends early while
// table files exist that it does not mention is refused: a truncated MANIFEST and a power cut in
// the middle of a compaction look alike, and a Raft node can always be refilled from its peers.
func checkManifest(dir string, opts badger.Options) error {
	path := filepath.Join(dir, "MANIFEST")
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil // a new database
	}
	if err != nil {
		return fmt.Errorf("%w: %s: %w", ErrDamaged, path, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return fmt.Errorf("%w: %s: %w", ErrDamaged, path, err)
	}
	m, end, err := badger.ReplayManifestFile(f, opts.ExternalMagicVersion, opts)
	if err != nil {
		return fmt.Errorf("%w: %s: %w", ErrDamaged, path, err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("%w: %s: %w", ErrDamaged, dir, err)
	}
	onDisk := map[uint64]bool{}
	for _, e := range entries {
		if id, ok := table.ParseFileID(e.Name()); ok && strings.HasSuffix(e.Name(), ".sst") {
			onDisk[id] = true
		}
	}
	var missing, unknown []string
	for id := range m.Tables {
		if !onDisk[id] {
			missing = append(missing, table.IDToFilename(id))
		}
	}
	for id := range onDisk {
		if _, ok := m.Tables[id]; !ok {
			unknown = append(unknown, table.IDToFilename(id))
		}
	}
	sort.Strings(missing)
	sort.Strings(unknown)
	if len(missing) > 0 {
		return fmt.Errorf("%w: %s names table files that are missing: %s", ErrDamaged, path, strings.Join(missing, ", "))
	}
	if end < st.Size() && len(unknown) > 0 {
		return fmt.Errorf("%w: %s ends after %d of its %d bytes and does not describe the table files %s (truncated or overwritten?)",
			ErrDamaged, path, end, st.Size(), strings.Join(unknown, ", "))
	}
	ids := make([]uint64, 0, len(m.Tables))
	for id := range m.Tables {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	for _, id := range ids {
		if err := verifyTable(table.NewFilename(id, dir), m.Tables[id].Compression, opts.BlockSize); err != nil {
			return err
		}
	}
	return nil
}

// verifyTable checks one table file's index and block checksums. badger can do this at Open
// (ChecksumVerificationMode OnTableRead), but v4.9.6 dereferences a nil block while reporting a
// damaged one and crashes the process, so it runs here, with that crash contained. The file is
// mapped read-only and closed with MmapFile.Close, never through Table.DecrRef, which deletes the
// file when the last reference goes.
func verifyTable(path string, c options.CompressionType, blockSize int) (err error) {
	mf, err := z.OpenMmapFile(path, os.O_RDONLY, 0)
	if err != nil && !errors.Is(err, z.NewFile) {
		return fmt.Errorf("%w: %s: %w", ErrDamaged, path, err)
	}
	// OpenTable closes the file itself only on errors that cannot happen here (stat, file name,
	// checksum verification, which is off).
	defer func() { _ = mf.Close(-1) }()
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: %s: unreadable table (%v)", ErrDamaged, path, r)
		}
	}()
	t, err := table.OpenTable(mf, table.Options{ChkMode: options.NoVerification, Compression: c, BlockSize: blockSize})
	if err != nil {
		return fmt.Errorf("%w: %s: %w", ErrDamaged, path, err)
	}
	if err := t.VerifyChecksum(); err != nil {
		return fmt.Errorf("%w: %s: %w", ErrDamaged, path, err)
	}
	return nil
}
