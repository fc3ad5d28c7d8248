package state

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp"

	"github.com/dgraph-io/badger/v4"
)

// Key layout. Every key lives under the FSM prefix "fsm/" so that snapshots and restores of the
// store cover exactly this state.
const (
	pDataset        = "fsm/ds/"
	pDatasetVersion = "fsm/dsv/"
	pModel          = "fsm/m/"
	pModelVersion   = "fsm/mv/"
	pManifest       = "fsm/mvm/" // model/%010d -> canonical manifest bytes
	pVersionTags    = "fsm/mvt/" // model/%010d -> the version's tags (encodeTags)
	pChunk          = "fsm/chunk/"
	pChunkPending   = "fsm/chunkp/" // digest -> Unix ms it was stored: no version lists it yet
	pDevice         = "fsm/dev/"
	pDeviceStatus   = "fsm/devst/"  // device id -> its status (presence, reported, health, outputs)
	pDeviceToken    = "fsm/devtok/" // token hash -> device id
	pReportCursor   = "fsm/devrep/" // device id -> JSON ReportCursor (a "reports" change when written)
	pToken          = "fsm/tok/"
	pTokenHash      = "fsm/tokh/" // token hash -> token id
	pAudit          = "fsm/audit/"
	kAuditHead      = "fsm/audithead"
	pLineageNode    = "fsm/ln/"
	pLineageOut     = "fsm/lo/" // from \x00 kind \x00 to -> edge
	pLineageIn      = "fsm/li/" // to \x00 kind \x00 from -> ""
	pSigningKey     = "fsm/key/"
	pTrustRoot      = "fsm/trust/root/" // %020d version -> root metadata (TUF root.json)
	kTrust          = "fsm/trust/state" // Trust: online keys and the signer
	pRevoked        = "fsm/revoked/"    // model -> its deprecated versions (the revocation list)
	pRequest        = "fsm/req/"
	pObject         = "fsm/obj/" // digest -> ObjectRef of a manifest, contract or profile
)

func versionKey(prefix, name string, v int) []byte {
	return []byte(fmt.Sprintf("%s%s/%010d", prefix, name, v))
}

func nameKey(prefix, name string) []byte { return []byte(prefix + name) }

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

// ValidName reports whether s may name a dataset, model, device, alias or token: 1 to 128
// characters of letters, digits, '.', '_' and '-', starting with a letter or digit. Names become
// parts of keys, MQTT topics and URLs, so '/', '+', '#' and spaces are refused.
func ValidName(s string) bool { return nameRE.MatchString(s) }

func getJSON(txn *badger.Txn, key []byte, v any) error {
	item, err := txn.Get(key)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return ErrNotFound
	}
	if err != nil {
		return err
	}
	return item.Value(func(b []byte) error { return json.Unmarshal(b, v) })
}

func putJSON(txn *badger.Txn, key []byte, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode %s: %w", key, err)
	}
	return txn.Set(key, b)
}

func exists(txn *badger.Txn, key []byte) (bool, error) {
	_, err := txn.Get(key)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return false, nil
	}
	return err == nil, err
}
