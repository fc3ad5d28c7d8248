package store

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/hashicorp/raft"

	"github.com/driftline/driftline/hub/raftstore"
)

// Backup file (`driftline hub backup`):
//
//	backupMagic
//	uint32 big endian n, then n bytes of BackupInfo as JSON (n <= maxBackupHeader)
//	the FSM snapshot stream of snapshot.go (its own magic, records and CRC-32C)
//	backupTrailer, uint64 big endian record count, SHA-256 of every byte before the digest
//
// The snapshot stream is the one raft snapshots use, so a backup restores through the same code
// as a snapshot sent to a lagging follower.
var (
	backupMagic   = []byte("DLBACKUP1\n")
	backupTrailer = []byte("DLBACKUPEND\n")
)

const (
	backupFormat    = 1
	maxBackupHeader = 64 << 10
)

// ErrBadBackup means a backup file is not one, or is truncated or corrupt. The message says which.
var ErrBadBackup = errors.New("not a usable backup")

// BackupInfo describes a backup: the header of the file, and what reading it found.
type BackupInfo struct {
	// Format is the file format version (1).
	Format int `json:"format"`
	// Created is when the leader took the backup (UTC).
	Created time.Time `json:"created"`
	// Node is the id of the leader that wrote it.
	Node string `json:"node"`
	// Index is the raft index the state includes (everything up to it, nothing after).
	Index uint64 `json:"index"`
	// Term is the leader's term when it took the backup.
	Term uint64 `json:"term"`
	// EstimatedBytes is the leader's guess of the file's size (its database's size): for
	// progress only.
	EstimatedBytes int64 `json:"estimated_bytes"`
	// Records and Bytes are filled in by whoever reads the whole file (not in the header).
	Records int   `json:"records,omitempty"`
	Bytes   int64 `json:"bytes,omitempty"`
}

// Backup writes a consistent copy of the replicated state to w: everything committed before the
// call, as of one raft index. It runs on the leader (ErrNotLeader elsewhere) and does not stop
// writes: it reads from a badger read transaction while the cluster goes on. start, when not nil,
// is called with the header before the first byte is written (an HTTP handler sets its headers
// there). A failure after start leaves w with a partial file, which ReadBackup refuses.
func (s *Store) Backup(ctx context.Context, w io.Writer, start func(BackupInfo)) (BackupInfo, error) {
	if err := s.Barrier(ctx); err != nil {
		return BackupInfo{}, err
	}
	txn, pos, err := s.fullTxn(ctx)
	if err != nil {
		return BackupInfo{}, err
	}
	defer txn.Discard()
	lsm, vlog := s.cfg.DB.Size()
	info := BackupInfo{Format: backupFormat, Created: time.Now().UTC().Truncate(time.Millisecond), Node: s.cfg.NodeID,
		Index: pos.index, Term: s.raft.CurrentTerm(), EstimatedBytes: lsm + vlog}
	if start != nil {
		start(info)
	}
	sum := sha256.New()
	cw := &countWriter{w: io.MultiWriter(w, sum)}
	hdr, err := json.Marshal(info)
	if err != nil {
		return info, err
	}
	var n [8]byte
	binary.BigEndian.PutUint32(n[:4], uint32(len(hdr)))
	for _, b := range [][]byte{backupMagic, n[:4], hdr} {
		if _, err := cw.Write(b); err != nil {
			return info, fmt.Errorf("write backup: %w", err)
		}
	}
	records, err := writeSnapshotCount(txn, cw)
	if err != nil {
		return info, fmt.Errorf("write backup: %w", err)
	}
	binary.BigEndian.PutUint64(n[:], uint64(records))
	for _, b := range [][]byte{backupTrailer, n[:]} {
		if _, err := cw.Write(b); err != nil {
			return info, fmt.Errorf("write backup: %w", err)
		}
	}
	if _, err := w.Write(sum.Sum(nil)); err != nil {
		return info, fmt.Errorf("write backup: %w", err)
	}
	info.Records, info.Bytes = records, cw.n+sha256.Size
	s.log.Info("backup written", "index", info.Index, "records", records, "bytes", info.Bytes)
	return info, nil
}

// fullTxn opens a read transaction whose applied position covers whole raft entries. A position
// inside an entry (a TypeBatch split over badger transactions, invariant 3 of DESIGN.md) lasts
// only until the rest of the entry commits, so it retries.
func (s *Store) fullTxn(ctx context.Context) (*badger.Txn, position, error) {
	for {
		txn := s.cfg.DB.NewTransaction(false)
		pos, err := readPosition(txn)
		if err != nil {
			txn.Discard()
			return nil, pos, err
		}
		if pos.next == entryDone {
			return txn, pos, nil
		}
		txn.Discard()
		select {
		case <-ctx.Done():
			return nil, pos, fmt.Errorf("%w: backup: waiting for a whole entry: %w", ErrTimeout, ctx.Err())
		case <-s.stop:
			return nil, pos, ErrShutdown
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func readPosition(txn *badger.Txn) (position, error) {
	var p position
	item, err := txn.Get(appliedKey)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return position{next: entryDone}, nil
	}
	if err != nil {
		return p, err
	}
	err = item.Value(func(v []byte) error {
		if len(v) != 12 {
			return fmt.Errorf("%w: applied position of %d bytes", ErrCorruptSnapshot, len(v))
		}
		p = position{index: binary.BigEndian.Uint64(v), next: binary.BigEndian.Uint32(v[8:])}
		return nil
	})
	return p, err
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// hashReader hashes what its reader hands out (after bufio's read-ahead, so the digest covers
// exactly the bytes consumed).
type hashReader struct {
	r   *bufio.Reader
	h   hash.Hash
	n   int64
	one [1]byte
}

func (h *hashReader) Read(p []byte) (int, error) {
	n, err := h.r.Read(p)
	h.h.Write(p[:n])
	h.n += int64(n)
	return n, err
}

func (h *hashReader) ReadByte() (byte, error) {
	c, err := h.r.ReadByte()
	if err == nil {
		h.one[0] = c
		h.h.Write(h.one[:])
		h.n++
	}
	return c, err
}

// ReadBackup reads a whole backup file, calling put for each record of the state (put may be
// nil), and checks its header, its snapshot checksum, its record count and its SHA-256. progress,
// when not nil, is called with the bytes read so far now and then. A truncated, corrupt or foreign
// file gives an error wrapping ErrBadBackup that says which.
func ReadBackup(r io.Reader, put func(info BackupInfo, k, v []byte) error, progress func(int64)) (BackupInfo, error) {
	hr := &hashReader{r: bufio.NewReaderSize(r, 256<<10), h: sha256.New()}
	var info BackupInfo
	magic := make([]byte, len(backupMagic))
	if _, err := io.ReadFull(hr, magic); err != nil || !bytes.Equal(magic, backupMagic) {
		switch {
		case err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF):
			return info, fmt.Errorf("read backup: %w", err)
		case err != nil && hr.n == 0:
			return info, fmt.Errorf("%w: the file is empty", ErrBadBackup)
		}
		return info, fmt.Errorf("%w: not a driftline backup (no %q header)", ErrBadBackup, strings.TrimSpace(string(backupMagic)))
	}
	var n [8]byte
	if _, err := io.ReadFull(hr, n[:4]); err != nil {
		return info, truncated(hr.n, err)
	}
	hlen := binary.BigEndian.Uint32(n[:4])
	if hlen == 0 || hlen > maxBackupHeader {
		return info, fmt.Errorf("%w: header of %d bytes: corrupt file", ErrBadBackup, hlen)
	}
	hdr := make([]byte, hlen)
	if _, err := io.ReadFull(hr, hdr); err != nil {
		return info, truncated(hr.n, err)
	}
	if err := json.Unmarshal(hdr, &info); err != nil {
		return info, fmt.Errorf("%w: header: %v: corrupt file", ErrBadBackup, err)
	}
	if info.Format != backupFormat {
		return info, fmt.Errorf("%w: format %d; this hub reads format %d (use the hub version that wrote it)", ErrBadBackup, info.Format, backupFormat)
	}
	var lastReport int64
	records := 0
	err := readSnapshotStream(hr, func(k, v []byte) error {
		records++
		if progress != nil && hr.n-lastReport >= 1<<20 {
			lastReport = hr.n
			progress(hr.n)
		}
		if put == nil {
			return nil
		}
		return put(info, k, v)
	})
	if err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
			return info, truncated(hr.n, err)
		}
		if errors.Is(err, ErrCorruptSnapshot) {
			return info, fmt.Errorf("%w: %v", ErrBadBackup, err)
		}
		return info, err
	}
	tr := make([]byte, len(backupTrailer))
	if _, err := io.ReadFull(hr, tr); err != nil {
		return info, truncated(hr.n, err)
	}
	if !bytes.Equal(tr, backupTrailer) {
		return info, fmt.Errorf("%w: no end marker after the state: corrupt file", ErrBadBackup)
	}
	if _, err := io.ReadFull(hr, n[:]); err != nil {
		return info, truncated(hr.n, err)
	}
	if got := binary.BigEndian.Uint64(n[:]); got != uint64(records) {
		return info, fmt.Errorf("%w: the file says %d records, it holds %d: corrupt file", ErrBadBackup, got, records)
	}
	want := hr.h.Sum(nil)
	got := make([]byte, sha256.Size)
	if _, err := io.ReadFull(hr.r, got); err != nil {
		return info, truncated(hr.n, err)
	}
	if !bytes.Equal(got, want) {
		return info, fmt.Errorf("%w: SHA-256 mismatch: corrupt file", ErrBadBackup)
	}
	if _, err := hr.r.ReadByte(); !errors.Is(err, io.EOF) {
		return info, fmt.Errorf("%w: bytes after the end of the backup: corrupt file", ErrBadBackup)
	}
	info.Records, info.Bytes = records, hr.n+sha256.Size
	if progress != nil {
		progress(info.Bytes)
	}
	return info, nil
}

func truncated(at int64, err error) error {
	return fmt.Errorf("%w: the file is truncated (it ends after %d bytes: %v); take the backup again", ErrBadBackup, at, err)
}

// SeedConfig says where Seed writes a new node's state: the same places Open reads.
type SeedConfig struct {
	// LogDB holds the raft log and stable store (Config.LogDB, or Config.DB when there is one
	// database). It must hold no raft state yet.
	LogDB *badger.DB
	// Dir is the raft snapshot directory (Config.Dir).
	Dir string
	// NodeID and RaftAddr are the node's raft id and the address peers dial: the values the
	// node will be started with.
	NodeID, RaftAddr string
	Logger           *slog.Logger
	// Progress, when not nil, is called with the bytes of the backup read so far.
	Progress func(int64)
}

// Seed turns a backup into the raft state of a new one-node cluster: a raft snapshot at the
// backup's index whose configuration is this node alone, and a current term of at least the
// backup's. Open on the same directories then restores the snapshot into the FSM and elects the
// node; other nodes join it as usual. The records of the old cluster's nodes are dropped (the new
// leader records its own). Nothing is written unless the whole file checks out.
func Seed(cfg SeedConfig, r io.Reader) (BackupInfo, error) {
	if cfg.LogDB == nil || cfg.Dir == "" || cfg.NodeID == "" || cfg.RaftAddr == "" {
		return BackupInfo{}, fmt.Errorf("%w: LogDB, Dir, NodeID and RaftAddr are required", ErrConfig)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	hlog := newRaftLogger(cfg.Logger)
	logs := raftstore.New(cfg.LogDB)
	snaps, err := raft.NewFileSnapshotStoreWithLogger(cfg.Dir, 2, hlog)
	if err != nil {
		return BackupInfo{}, fmt.Errorf("raft snapshot store: %w", err)
	}
	has, err := raft.HasExistingState(logs, logs, snaps)
	if err != nil {
		return BackupInfo{}, fmt.Errorf("check raft state: %w", err)
	}
	if has {
		return BackupInfo{}, fmt.Errorf("%w: the data dir already holds a node's state; restore into an empty one", ErrConfig)
	}
	_, trans := raft.NewInmemTransport(raft.ServerAddress(cfg.RaftAddr))
	defer trans.Close()
	var (
		sink raft.SnapshotSink
		sw   *snapWriter
	)
	cancel := func() {
		if sink != nil {
			_ = sink.Cancel()
		}
	}
	info, err := ReadBackup(r, func(info BackupInfo, k, v []byte) error {
		if sink == nil {
			conf := raft.Configuration{Servers: []raft.Server{{
				ID: raft.ServerID(cfg.NodeID), Address: raft.ServerAddress(cfg.RaftAddr), Suffrage: raft.Voter}}}
			var err error
			if sink, err = snaps.Create(raft.SnapshotVersionMax, info.Index, info.Term, conf, info.Index, trans); err != nil {
				return fmt.Errorf("create raft snapshot: %w", err)
			}
			if sw, err = newSnapWriter(sink); err != nil {
				return err
			}
		}
		switch {
		case bytes.HasPrefix(k, nodesPrefix):
			return nil // the old cluster's members
		case bytes.Equal(k, appliedKey):
			v = position{index: info.Index, next: entryDone}.encode()
		}
		return sw.put(k, v)
	}, cfg.Progress)
	if err != nil {
		cancel()
		return info, err
	}
	if sink == nil {
		return info, fmt.Errorf("%w: the backup holds no state", ErrBadBackup)
	}
	if err := sw.finish(); err != nil {
		cancel()
		return info, err
	}
	if err := sink.Close(); err != nil {
		return info, fmt.Errorf("write raft snapshot: %w", err)
	}
	// Terms only grow: a node that remembers a term below the snapshot's would elect itself in a
	// term older than its own log.
	if err := logs.SetUint64([]byte("CurrentTerm"), info.Term); err != nil {
		return info, fmt.Errorf("store the current term: %w", err)
	}
	return info, nil
}

// SnapshotInfo describes the newest raft snapshot this node holds.
type SnapshotInfo struct {
	Index uint64    `json:"index"`
	Term  uint64    `json:"term"`
	Time  time.Time `json:"time"`
	Size  int64     `json:"size"`
}

// LastSnapshot returns the newest raft snapshot on this node's disk; ok is false when it has none.
func (s *Store) LastSnapshot() (SnapshotInfo, bool) {
	list, err := s.snaps.List()
	if err != nil || len(list) == 0 {
		return SnapshotInfo{}, false
	}
	m := list[0]
	si := SnapshotInfo{Index: m.Index, Term: m.Term, Size: m.Size}
	// FileSnapshotStore names snapshots term-index-unixmillis.
	if i := strings.LastIndexByte(m.ID, '-'); i >= 0 {
		if ms, err := strconv.ParseInt(m.ID[i+1:], 10, 64); err == nil {
			si.Time = time.UnixMilli(ms).UTC()
		}
	}
	return si, true
}

// LastLogIndex is the index of the last entry in this node's raft log (or snapshot).
func (s *Store) LastLogIndex() uint64 { return s.raft.LastIndex() }

// TransferLeadership hands leadership to the voter id, or to the most up-to-date voter when id is
// empty, and returns the new leader's id. Leader only.
func (s *Store) TransferLeadership(ctx context.Context, id string) (string, error) {
	if !s.IsLeader() {
		return "", ErrNotLeader
	}
	var f raft.Future
	if id == "" {
		f = s.raft.LeadershipTransfer()
	} else {
		if id == s.cfg.NodeID {
			return "", fmt.Errorf("%w: node %s is already the leader", ErrConfig, id)
		}
		var addr raft.ServerAddress
		cf := s.raft.GetConfiguration()
		if err := cf.Error(); err != nil {
			return "", translate("configuration", err)
		}
		for _, srv := range cf.Configuration().Servers {
			if string(srv.ID) == id && srv.Suffrage == raft.Voter {
				addr = srv.Address
			}
		}
		if addr == "" {
			return "", fmt.Errorf("%w: %s is not a voter of this cluster", ErrUnknownNode, id)
		}
		f = s.raft.LeadershipTransferToServer(raft.ServerID(id), addr)
	}
	if err := s.wait(ctx, "leadership transfer", f); err != nil {
		return "", err
	}
	// The old leader has stepped down; it learns the new one from its first heartbeat.
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	for {
		if _, lid := s.raft.LeaderWithID(); lid != "" && string(lid) != s.cfg.NodeID {
			return string(lid), nil
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("%w: leadership was handed over but no new leader is known yet", ErrTimeout)
		case <-s.stop:
			return "", ErrShutdown
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// ErrUnknownNode means a node id names no member of the cluster.
var ErrUnknownNode = errors.New("store: no such node")

// fixOwnAddress makes the raft configuration name this node at the address its transport
// advertises, when it names another (a node restored from a backup with another --raft, or moved
// to a new address): peers elected later must reach it. Leader only; a no-op when they match.
func (s *Store) fixOwnAddress(ctx context.Context) error {
	if !s.IsLeader() {
		return nil
	}
	cf := s.raft.GetConfiguration()
	if err := cf.Error(); err != nil {
		return translate("configuration", err)
	}
	for _, srv := range cf.Configuration().Servers {
		if string(srv.ID) != s.cfg.NodeID || srv.Address == s.trans.LocalAddr() || srv.Suffrage != raft.Voter {
			continue
		}
		s.log.Info("updating this node's raft address in the configuration", "from", srv.Address, "to", s.trans.LocalAddr())
		f := s.raft.AddVoter(srv.ID, s.trans.LocalAddr(), 0, timeoutFrom(ctx, opTimeout))
		return s.wait(ctx, "update own address", f)
	}
	return nil
}
