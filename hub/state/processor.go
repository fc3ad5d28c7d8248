package state

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/driftline/driftline/hub/command"
)

// requestTTL bounds how long the result of a request id is kept to make retries idempotent.
const requestTTL = time.Hour

// Processor applies registry, fleet, lineage, token and audit commands to the FSM state. It is
// stateless and deterministic: everything it needs (ids, hashes, signatures, time) is inside the
// command. It implements the hub store's Processor interface.
//
// Contract with the store: Apply runs inside the store's badger transaction; when it returns an
// error it has written nothing (every check happens before the first write).
type Processor struct {
	// PartDevices bounds the devices of one part of a rollout command split by Split (0:
	// DefaultPartDevices); tests set it small.
	PartDevices int
}

// Apply applies env at Raft index. The result is the object the command created or changed.
func (p Processor) Apply(txn *badger.Txn, index uint64, env command.Envelope) (any, error) {
	return p.apply(txn, index, env, nil)
}

func (p Processor) apply(txn *badger.Txn, index uint64, env command.Envelope, em emitter) (any, error) {
	if env.ID != "" {
		var prev json.RawMessage
		if err := getJSON(txn, []byte(pRequest+env.ID), &prev); err == nil {
			return prev, nil
		}
	}
	pre, err := eventsBefore(txn, env)
	if err != nil {
		return nil, err
	}
	var deep []Change
	res, audit, err := p.dispatch(txn, env, func(c any) { deep = append(deep, c.(Change)) })
	if err != nil {
		return nil, err
	}
	for _, c := range deep {
		em.add(c)
	}
	changesOf(em, env, res, audit != nil)
	if err := eventsAfter(txn, env, pre, res); err != nil {
		return nil, err
	}
	if audit != nil {
		if err := appendAudit(txn, index, env, *audit); err != nil {
			return nil, err
		}
	}
	if env.ID != "" && res != nil {
		b, err := json.Marshal(res)
		if err == nil {
			if err := txn.SetEntry(badger.NewEntry([]byte(pRequest+env.ID), b).WithTTL(requestTTL)); err != nil {
				return nil, err
			}
		}
	}
	return res, nil
}

// auditNote is what a command adds to the audit log.
type auditNote struct {
	action, object, detail string
}

func (p Processor) dispatch(txn *badger.Txn, env command.Envelope, em emitter) (any, *auditNote, error) {
	switch env.Type &^ command.IgnoreIfUnknown {
	case command.TypeTokenCreate:
		var c TokenCreate
		return decodeAnd(env, &c, func() (any, *auditNote, error) { return tokenCreate(txn, env, c) })
	case command.TypeTokenDelete:
		var c TokenDelete
		return decodeAnd(env, &c, func() (any, *auditNote, error) { return tokenDelete(txn, c) })
	case command.TypeDatasetCreate:
		var c DatasetCreate
		return decodeAnd(env, &c, func() (any, *auditNote, error) { return datasetCreate(txn, env, c) })
	case command.TypeDatasetVersionCreate:
		var c DatasetVersionCreate
		return decodeAnd(env, &c, func() (any, *auditNote, error) { return datasetVersionCreate(txn, env, c) })
	case command.TypeModelCreate:
		var c ModelCreate
		return decodeAnd(env, &c, func() (any, *auditNote, error) { return modelCreate(txn, env, c) })
	case command.TypeChunksPut:
		var c ChunksPut
		return decodeAnd(env, &c, func() (any, *auditNote, error) { return chunksPut(txn, env, c) })
	case command.TypeChunksSweep:
		var c ChunksSweep
		return decodeAnd(env, &c, func() (any, *auditNote, error) { return chunksSweep(txn, c) })
	case command.TypeModelVersionCreate:
		var c ModelVersionCreate
		return decodeAnd(env, &c, func() (any, *auditNote, error) { return modelVersionCreate(txn, env, c) })
	case command.TypeModelVersionApprove:
		var c ModelVersionApprove
		return decodeAnd(env, &c, func() (any, *auditNote, error) { return modelVersionApprove(txn, env, c) })
	case command.TypeModelVersionDeprecate:
		var c ModelVersionDeprecate
		return decodeAnd(env, &c, func() (any, *auditNote, error) { return modelVersionDeprecate(txn, c) })
	case command.TypeAliasSet:
		var c AliasSet
		return decodeAnd(env, &c, func() (any, *auditNote, error) { return aliasSet(txn, c) })
	case command.TypeTagSet:
		var c TagSet
		return decodeAnd(env, &c, func() (any, *auditNote, error) { return tagSet(txn, c) })
	case command.TypeDeviceCreate:
		var c DeviceCreate
		return decodeAnd(env, &c, func() (any, *auditNote, error) { return deviceCreate(txn, env, c) })
	case command.TypeDevicePatch:
		var c DevicePatch
		return decodeAnd(env, &c, func() (any, *auditNote, error) { return devicePatch(txn, c) })
	case command.TypeDeviceDelete:
		var c DeviceDelete
		return decodeAnd(env, &c, func() (any, *auditNote, error) { return deviceDelete(txn, env, c) })
	case command.TypeDeviceRekey:
		var c DeviceRekey
		return decodeAnd(env, &c, func() (any, *auditNote, error) { return deviceRekey(txn, c) })
	case command.TypeDeviceDesiredSet:
		var c DeviceDesiredSet
		return decodeAnd(env, &c, func() (any, *auditNote, error) { return deviceDesiredSet(txn, env, c) })
	case command.TypeDeviceTelemetry:
		var c DeviceTelemetry
		return decodeAnd(env, &c, func() (any, *auditNote, error) { return deviceTelemetry(txn, env, c, em) })
	case command.TypeOpenLineage:
		var c OpenLineageEvent
		return decodeAnd(env, &c, func() (any, *auditNote, error) { return openLineage(txn, env, c) })
	case command.TypeRolloutCreate, command.TypeRolloutCreatePart, command.TypeRolloutTransition, command.TypeRolloutTransitionPart:
		return dispatchRollout(txn, env, em)
	case command.TypeTrustSet:
		var c TrustSet
		return decodeAnd(env, &c, func() (any, *auditNote, error) { return trustSet(txn, env, c) })
	case command.TypeSigningKeyAdd:
		var c SigningKeyAdd
		return decodeAnd(env, &c, func() (any, *auditNote, error) { return signingKeyAdd(txn, env, c) })
	case command.TypeWebhookCreate:
		var c WebhookCreate
		return decodeAnd(env, &c, func() (any, *auditNote, error) { return webhookCreate(txn, env, c) })
	case command.TypeWebhookDelete:
		var c WebhookDelete
		return decodeAnd(env, &c, func() (any, *auditNote, error) { return webhookDelete(txn, c) })
	case command.TypeWebhookTest:
		var c WebhookTest
		return decodeAnd(env, &c, func() (any, *auditNote, error) { return webhookTest(txn, env, c) })
	case command.TypeModelVersionOutputSet:
		var c ModelVersionOutputSet
		return decodeAnd(env, &c, func() (any, *auditNote, error) { return modelVersionOutputSet(txn, c) })
	case command.TypeSampleStage:
		var c SampleStage
		return decodeAnd(env, &c, func() (any, *auditNote, error) { return sampleStage(txn, env, c) })
	case command.TypeCandidateCreate:
		var c CandidateCreate
		return decodeAnd(env, &c, func() (any, *auditNote, error) { return candidateCreate(txn, env, c) })
	case command.TypeWebhookAttempt:
		var c WebhookAttempt
		return decodeAnd(env, &c, func() (any, *auditNote, error) { return webhookAttempt(txn, env, c) })
	}
	return dispatchOps(txn, env)
}

// dispatchRollout applies the rollout commands, whole or in parts (Split).
func dispatchRollout(txn *badger.Txn, env command.Envelope, em emitter) (any, *auditNote, error) {
	typ := env.Type &^ command.IgnoreIfUnknown
	if typ == command.TypeRolloutCreate || typ == command.TypeRolloutCreatePart {
		var c RolloutCreate
		return decodeAnd(env, &c, func() (any, *auditNote, error) {
			if (c.Part != nil) != (typ == command.TypeRolloutCreatePart) {
				return nil, nil, invalid("a rollout plan part travels as its own command type, and only it")
			}
			return rolloutCreate(txn, env, c)
		})
	}
	var c RolloutTransition
	return decodeAnd(env, &c, func() (any, *auditNote, error) {
		if (c.Part != nil) != (typ == command.TypeRolloutTransitionPart) {
			return nil, nil, invalid("a rollout transition part travels as its own command type, and only it")
		}
		return rolloutTransition(txn, env, c, em)
	})
}

// dispatchOps applies the operations commands (retention, the orphan-chunk mark) and refuses what nothing applies.
func dispatchOps(txn *badger.Txn, env command.Envelope) (any, *auditNote, error) {
	switch env.Type &^ command.IgnoreIfUnknown {
	case command.TypeRetentionPrune:
		var c RetentionPrune
		return decodeAnd(env, &c, func() (any, *auditNote, error) { return retentionPrune(txn, env, c) })
	case command.TypeChunksOrphanMark:
		return decodeAnd(env, &ChunksOrphanMark{}, func() (any, *auditNote, error) { return chunksOrphanMark(txn, env) })
	}
	// A type the command package knows but nothing here applies: a build mistake. The store
	// stops the node on it rather than letting it diverge.
	return nil, nil, fmt.Errorf("%w %d: not handled by the registry", command.ErrUnknownType, uint16(env.Type))
}

func decodeAnd(env command.Envelope, v any, f func() (any, *auditNote, error)) (any, *auditNote, error) {
	if err := env.DecodePayload(v); err != nil {
		return nil, nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	return f()
}

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
}

func notFound(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrNotFound, fmt.Sprintf(format, args...))
}

func conflict(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrConflict, fmt.Sprintf(format, args...))
}

func existsErr(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrExists, fmt.Sprintf(format, args...))
}

func tokenCreate(txn *badger.Txn, env command.Envelope, c TokenCreate) (any, *auditNote, error) {
	if c.ID == "" || c.Hash == "" || !ValidRole(c.Role) {
		return nil, nil, invalid("token needs id, hash and a valid role, got role %q", c.Role)
	}
	if ok, err := exists(txn, nameKey(pToken, c.ID)); err != nil || ok {
		if err != nil {
			return nil, nil, err
		}
		return nil, nil, existsErr("token %s", c.ID)
	}
	if c.Role == RoleJoin && c.ExpiresAt <= env.Time {
		return nil, nil, invalid("a join token needs an expiry in the future")
	}
	t := Token{ID: c.ID, Name: c.Name, Role: c.Role, Hash: c.Hash, CreatedBy: env.Actor, CreatedAt: env.Time, ExpiresAt: c.ExpiresAt}
	if err := putToken(txn, t); err != nil {
		return nil, nil, err
	}
	return t, &auditNote{"token.create", "token:" + c.ID, c.Role}, nil
}

// storedToken is Token with its hash, for storage.
type storedToken struct {
	Token
	Hash string `json:"hash"`
}

func putToken(txn *badger.Txn, t Token) error {
	if err := putJSON(txn, nameKey(pToken, t.ID), storedToken{t, t.Hash}); err != nil {
		return err
	}
	return txn.Set(nameKey(pTokenHash, t.Hash), []byte(t.ID))
}

func tokenDelete(txn *badger.Txn, c TokenDelete) (any, *auditNote, error) {
	var t storedToken
	if err := getJSON(txn, nameKey(pToken, c.ID), &t); err != nil {
		if errors.Is(err, ErrNotFound) {
			return nil, nil, notFound("token %s", c.ID)
		}
		return nil, nil, err
	}
	if err := txn.Delete(nameKey(pToken, c.ID)); err != nil {
		return nil, nil, err
	}
	if err := txn.Delete(nameKey(pTokenHash, t.Hash)); err != nil {
		return nil, nil, err
	}
	t.Token.Hash = t.Hash
	return t.Token, &auditNote{"token.delete", "token:" + c.ID, ""}, nil
}

func signingKeyAdd(txn *badger.Txn, env command.Envelope, c SigningKeyAdd) (any, *auditNote, error) {
	if c.KeyID == "" || c.PublicKey == "" {
		return nil, nil, invalid("signing key needs key_id and public_key")
	}
	var k SigningKey
	if err := getJSON(txn, nameKey(pSigningKey, c.KeyID), &k); err == nil {
		return k, nil, nil // already known: nothing changes
	}
	k = SigningKey{KeyID: c.KeyID, PublicKey: c.PublicKey, AddedAt: env.Time}
	if err := putJSON(txn, nameKey(pSigningKey, c.KeyID), k); err != nil {
		return nil, nil, err
	}
	return k, &auditNote{"key.add", "key:" + c.KeyID, ""}, nil
}
