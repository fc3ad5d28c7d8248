package state

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/dgraph-io/badger/v4"

	"github.com/driftline/driftline/hub/command"
)

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }

type auditHead struct {
	Seq  uint64 `json:"seq"`
	Hash string `json:"hash"`
}

func auditKey(seq uint64) []byte { return []byte(fmt.Sprintf("%s%020d", pAudit, seq)) }

// AuditHash is the hash an audit entry must carry: sha256 over the previous entry's hash and the
// entry's fields, each length-prefixed so that no two different entries hash alike.
func AuditHash(e AuditEntry) string {
	h := sha256.New()
	for _, f := range []string{
		e.PrevHash, fmt.Sprint(e.Seq), fmt.Sprint(e.Index), fmt.Sprint(e.Time), e.Actor, e.Action, e.Object, e.Detail,
	} {
		fmt.Fprintf(h, "%d:%s;", len(f), f)
	}
	return hex.EncodeToString(h.Sum(nil))
}

func appendAudit(txn *badger.Txn, index uint64, env command.Envelope, n auditNote) error {
	var head auditHead
	if err := getJSON(txn, []byte(kAuditHead), &head); err != nil && !errors.Is(err, ErrNotFound) {
		return err
	}
	e := AuditEntry{
		Seq: head.Seq + 1, Index: index, Time: env.Time, Actor: env.Actor,
		Action: n.action, Object: n.object, Detail: n.detail, PrevHash: head.Hash,
	}
	e.Hash = AuditHash(e)
	if err := putJSON(txn, auditKey(e.Seq), e); err != nil {
		return err
	}
	return putJSON(txn, []byte(kAuditHead), auditHead{Seq: e.Seq, Hash: e.Hash})
}

// VerifyChain checks a run of audit entries in order: each entry's hash must match its content
// and its PrevHash the hash of the entry before (prev is the hash before the first entry, "" at
// the start of the log). It returns the index in entries of the first bad one, or -1.
func VerifyChain(prev string, entries []AuditEntry) (int, error) {
	for i, e := range entries {
		if e.PrevHash != prev {
			return i, fmt.Errorf("audit entry %d: prev_hash %q does not match the hash of entry %d", e.Seq, e.PrevHash, e.Seq-1)
		}
		if got := AuditHash(e); got != e.Hash {
			return i, fmt.Errorf("audit entry %d: hash %q does not match its content (%q)", e.Seq, e.Hash, got)
		}
		prev = e.Hash
	}
	return -1, nil
}
