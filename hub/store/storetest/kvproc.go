package storetest

import (
	"errors"
	"fmt"
	"strings"

	"github.com/dgraph-io/badger/v4"

	"github.com/driftline/driftline/hub/command"
)

// KVPrefix is where KVProcessor keeps its keys.
const KVPrefix = "fsm/kv/"

// ErrExists is KVProcessor's domain error for OpCreate on a key that exists.
var ErrExists = errors.New("storetest: key exists")

// KV operations understood by KVProcessor.
const (
	// OpPut sets Key to Value.
	OpPut = "put"
	// OpCreate sets Key to Value unless it exists (then ErrExists, nothing written).
	OpCreate = "create"
	// OpFill writes Count keys Key/0.. each holding Size bytes (to make transactions big).
	OpFill = "fill"
)

// KVOp is the payload KVProcessor applies.
type KVOp struct {
	Op    string `json:"op"`
	Key   string `json:"key"`
	Value string `json:"value,omitempty"`
	Count int    `json:"count,omitempty"`
	Size  int    `json:"size,omitempty"`
}

// KVResult is what KVProcessor returns: the raft index and the value written.
type KVResult struct {
	Index uint64
	Value string
}

// KVProcessor is a small, real store.Processor for tests: a key/value map under KVPrefix. It
// treats every command type it is given as a KVOp payload.
type KVProcessor struct{}

// Put returns an envelope that sets key to value.
func Put(key, value string) command.Envelope {
	return Op(KVOp{Op: OpPut, Key: key, Value: value})
}

// Op returns an envelope carrying op.
func Op(op KVOp) command.Envelope {
	env, err := command.New(command.TypeTagSet, "", 0, "test", op)
	if err != nil {
		panic(err) // KVOp always marshals
	}
	return env
}

// KVChange is the change KVProcessor emits for each key it writes (OpPut, OpCreate).
type KVChange struct {
	Key, Value string
}

// Apply implements store.Processor.
func (p KVProcessor) Apply(txn *badger.Txn, index uint64, env command.Envelope) (any, error) {
	return p.ApplyChanges(txn, index, env, func(any) {})
}

// ApplyChanges implements store.ChangeProcessor: a KVChange per key written by put or create.
func (KVProcessor) ApplyChanges(txn *badger.Txn, index uint64, env command.Envelope, emit func(any)) (any, error) {
	var op KVOp
	if err := env.DecodePayload(&op); err != nil {
		return nil, err
	}
	if op.Key == "" || strings.ContainsRune(op.Key, 0) {
		return nil, fmt.Errorf("storetest: bad key %q", op.Key)
	}
	k := []byte(KVPrefix + op.Key)
	switch op.Op {
	case OpCreate:
		if _, err := txn.Get(k); err == nil {
			return nil, fmt.Errorf("%w: %s", ErrExists, op.Key)
		} else if !errors.Is(err, badger.ErrKeyNotFound) {
			return nil, err
		}
		fallthrough
	case OpPut:
		if err := txn.Set(k, []byte(op.Value)); err != nil {
			return nil, err
		}
		emit(KVChange{Key: op.Key, Value: op.Value})
		return KVResult{Index: index, Value: op.Value}, nil
	case OpFill:
		v := []byte(strings.Repeat("f", op.Size))
		for i := range op.Count {
			if err := txn.Set([]byte(fmt.Sprintf("%s/%06d", k, i)), v); err != nil {
				return nil, err
			}
		}
		return KVResult{Index: index}, nil
	}
	return nil, fmt.Errorf("storetest: unknown op %q", op.Op)
}

// Get reads key from db ("" and false when absent).
func Get(db *badger.DB, key string) (string, bool, error) {
	var v []byte
	err := db.View(func(txn *badger.Txn) error {
		item, err := txn.Get([]byte(KVPrefix + key))
		if err != nil {
			return err
		}
		v, err = item.ValueCopy(nil)
		return err
	})
	if errors.Is(err, badger.ErrKeyNotFound) {
		return "", false, nil
	}
	return string(v), err == nil, err
}
