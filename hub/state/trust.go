package state

import (
	"crypto/ed25519"
	"errors"
	"fmt"

	"github.com/dgraph-io/badger/v4"

	"github.com/driftline/driftline/hub/command"
	"github.com/driftline/driftline/shared/artifact"
	"github.com/driftline/driftline/shared/trust"
)

// Key statuses.
const (
	// KeyActive is an online key the current root certifies.
	KeyActive = "active"
	// KeyRetired is a key a later root dropped: agents that learnt that root refuse its
	// signatures. Its private half is forgotten.
	KeyRetired = "retired"
)

// TrustKey is one online signing key of the cluster. The private half is replicated to every
// node (so any leader, and every node's desired publisher, can sign); the API never serves it.
type TrustKey struct {
	// KeyID is artifact.KeyID of the public key, as signatures name it.
	KeyID string `json:"key_id"`
	// PublicKey is the standard base64 of the 32-byte public key.
	PublicKey string `json:"public_key"`
	// Private is the 64-byte ed25519 private key; empty once retired.
	Private []byte `json:"private,omitempty"`
	// Status is KeyActive or KeyRetired.
	Status string `json:"status"`
	// AddedAt and RetiredAt are Unix milliseconds.
	AddedAt   int64 `json:"added_at"`
	RetiredAt int64 `json:"retired_at,omitempty"`
}

// Trust is the cluster's trust state: which root version is current, its online keys and the
// one that signs now. The root documents themselves are stored per version (TrustRoots).
type Trust struct {
	RootVersion int64      `json:"root_version"`
	Signer      string     `json:"signer"`
	Keys        []TrustKey `json:"keys"`
	UpdatedAt   int64      `json:"updated_at"`
}

// Public returns t without private keys.
func (t Trust) Public() Trust {
	out := t
	out.Keys = make([]TrustKey, len(t.Keys))
	for i, k := range t.Keys {
		k.Private = nil
		out.Keys[i] = k
	}
	return out
}

// SignerKey returns the private key of the signer.
func (t Trust) SignerKey() (ed25519.PrivateKey, error) {
	for _, k := range t.Keys {
		if k.KeyID == t.Signer && k.Status == KeyActive && len(k.Private) == ed25519.PrivateKeySize {
			return ed25519.PrivateKey(k.Private), nil
		}
	}
	return nil, fmt.Errorf("%w: no usable signing key", ErrNotFound)
}

// TrustSet installs root version N+1 (1 on a cluster without one) and the online keys that go
// with it. Payload of command.TypeTrustSet.
type TrustSet struct {
	// Root is the root metadata document, signed by the previous root's keys and its own.
	Root []byte `json:"root"`
	// Signer is the id of the key that signs from now on; it must be active.
	Signer string `json:"signer"`
	// Keys are every online key, active and retired. The active ones are exactly the root's
	// online keys, each with its private half.
	Keys []TrustKey `json:"keys"`
}

func trustSet(txn *badger.Txn, env command.Envelope, c TrustSet) (any, *auditNote, error) {
	var cur Trust
	if err := getJSON(txn, []byte(kTrust), &cur); err != nil && !errors.Is(err, ErrNotFound) {
		return nil, nil, err
	}
	var root trust.Root
	var err error
	if cur.RootVersion == 0 {
		root, err = trust.Parse(c.Root)
	} else {
		var prev []byte
		if prev, err = getRaw(txn, trustRootKey(cur.RootVersion)); err != nil {
			return nil, nil, err
		}
		var p trust.Root
		if p, err = trust.Parse(prev); err == nil {
			root, err = p.Update(c.Root)
		}
	}
	if err != nil {
		return nil, nil, invalid("%v", err)
	}
	online := root.Online()
	active := 0
	signerOK := false
	for _, k := range c.Keys {
		switch k.Status {
		case KeyActive:
			pub, err := artifact.ParsePublicKey([]byte(k.PublicKey))
			if err != nil || artifact.KeyID(pub) != k.KeyID || !online.Has(k.KeyID) {
				return nil, nil, invalid("active key %s is not an online key of root version %d", k.KeyID, root.Version())
			}
			if len(k.Private) != ed25519.PrivateKeySize || !ed25519.PrivateKey(k.Private).Public().(ed25519.PublicKey).Equal(pub) {
				return nil, nil, invalid("active key %s: private key does not match", k.KeyID)
			}
			active++
			signerOK = signerOK || k.KeyID == c.Signer
		case KeyRetired:
			if len(k.Private) != 0 || online.Has(k.KeyID) {
				return nil, nil, invalid("retired key %s is still certified or still has its private key", k.KeyID)
			}
		default:
			return nil, nil, invalid("key %s: status %q", k.KeyID, k.Status)
		}
	}
	if active != online.Len() || !signerOK {
		return nil, nil, invalid("root version %d certifies %d online keys; the command has %d active, signer %q", root.Version(), online.Len(), active, c.Signer)
	}
	if err := txn.Set(trustRootKey(root.Version()), c.Root); err != nil {
		return nil, nil, err
	}
	t := Trust{RootVersion: root.Version(), Signer: c.Signer, Keys: c.Keys, UpdatedAt: env.Time}
	if err := putJSON(txn, []byte(kTrust), t); err != nil {
		return nil, nil, err
	}
	return t.Public(), &auditNote{"trust.root", fmt.Sprintf("root:v%d", root.Version()), "signer " + c.Signer}, nil
}

func trustRootKey(v int64) []byte { return []byte(fmt.Sprintf("%s%020d", pTrustRoot, v)) }

func getRaw(txn *badger.Txn, key []byte) ([]byte, error) {
	item, err := txn.Get(key)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	return item.ValueCopy(nil)
}

// Trust returns the cluster's trust state, private keys included (for this node's signers; the
// API serves Trust.Public). A cluster without one answers ErrNotFound.
func (r Reader) Trust() (Trust, error) {
	var t Trust
	err := r.DB.View(func(txn *badger.Txn) error { return getJSON(txn, []byte(kTrust), &t) })
	return t, err
}

// TrustRoots returns every root document, oldest (version 1) first.
func (r Reader) TrustRoots() ([][]byte, error) {
	var out [][]byte
	err := r.DB.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(pTrustRoot), PrefetchValues: true})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			b, err := it.Item().ValueCopy(nil)
			if err != nil {
				return err
			}
			out = append(out, b)
		}
		return nil
	})
	return out, err
}

// ApprovalOf returns what an approval signature of mv binds: its name, version and manifest,
// its output reference when it has one, and the contract and reference profile of its first
// trained_on dataset version (the ones its desired state names). A trained_on version that
// does not exist binds nothing.
func (r Reader) ApprovalOf(mv ModelVersion) (artifact.Approval, error) {
	a := artifact.Approval{Name: mv.Model, Version: mv.Version, ManifestDigest: mv.ManifestDigest}
	if mv.Output != nil {
		a.OutputDigest = mv.Output.Digest
	}
	if len(mv.TrainedOn) == 0 {
		return a, nil
	}
	t := mv.TrainedOn[0]
	dv, err := r.DatasetVersion(t.Dataset, t.Version)
	if errors.Is(err, ErrNotFound) {
		return a, nil
	}
	if err != nil {
		return a, err
	}
	a.Dataset, a.DatasetVersion = t.Dataset, t.Version
	a.ContractDigest, a.ProfileDigest = dv.ContractHash, dv.ProfileDigest
	return a, nil
}

// ApprovalSignature returns the newest SigApproval signature of mv by a key of online that
// signs a (ApprovalOf(mv)), if any. For a version with an output reference the signature is
// verified, since one made before approvals bound the output digest does not cover it (and
// agents refuse it); without one, any SigApproval signature by an online key is taken as is:
// those bytes have not changed (docs/upgrading.md).
func ApprovalSignature(mv ModelVersion, a artifact.Approval, online artifact.KeyRing) (artifact.Signature, bool) {
	for i := len(mv.Signatures) - 1; i >= 0; i-- {
		s := mv.Signatures[i]
		if s.Kind != SigApproval || !online.Has(s.KeyID) {
			continue
		}
		sig := artifact.Signature{KeyID: s.KeyID, Sig: s.Sig}
		if a.OutputDigest != "" && online.VerifyApproval(a, sig) != nil {
			continue
		}
		return sig, true
	}
	return artifact.Signature{}, false
}

// LegacySignature returns the newest legacy signature of mv (Kind empty: a node key's signature
// over the manifest bytes), the one the previous release put in desired states, if any.
func LegacySignature(mv ModelVersion) (artifact.Signature, bool) {
	for i := len(mv.Signatures) - 1; i >= 0; i-- {
		if s := mv.Signatures[i]; s.Kind == "" {
			return artifact.Signature{KeyID: s.KeyID, Sig: s.Sig}, true
		}
	}
	return artifact.Signature{}, false
}

// MaxRevoked bounds the revocation list kept per model (the newest are kept).
const MaxRevoked = 256

// addRevoked appends version to model's revocation list.
func addRevoked(txn *badger.Txn, model string, version int) error {
	var list []int
	if err := getJSON(txn, nameKey(pRevoked, model), &list); err != nil && !errors.Is(err, ErrNotFound) {
		return err
	}
	for _, v := range list {
		if v == version {
			return nil
		}
	}
	list = append(list, version)
	if len(list) > MaxRevoked {
		list = list[len(list)-MaxRevoked:]
	}
	return putJSON(txn, nameKey(pRevoked, model), list)
}

// Revoked returns the versions of model deprecated since revocation lists exist, oldest first:
// desired states carry them, signed, so agents refuse those versions even under an old valid
// approval.
func (r Reader) Revoked(model string) ([]int, error) {
	var list []int
	err := r.DB.View(func(txn *badger.Txn) error { return getJSON(txn, nameKey(pRevoked, model), &list) })
	if errors.Is(err, ErrNotFound) {
		return nil, nil
	}
	return list, err
}
