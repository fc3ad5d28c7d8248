package devicedb

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/dgraph-io/badger/v4"
)

// Txn is a transaction scoped to one namespace. It is valid only inside the View or Update
// callback that received it and must not be used from several goroutines.
type Txn struct {
	txn *badger.Txn
	ns  Namespace
}

// Sub returns the same transaction scoped to the child namespace name, so one commit can span a
// namespace's children.
func (t *Txn) Sub(name string) *Txn {
	return &Txn{txn: t.txn, ns: t.ns.Sub(name)}
}

// Get returns a copy of the value of k, or ErrNotFound.
func (t *Txn) Get(k []byte) ([]byte, error) {
	item, err := t.txn.Get(t.ns.key(k))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("get %q: %w", k, err)
	}
	v, err := item.ValueCopy(nil)
	if err != nil {
		return nil, fmt.Errorf("read %q: %w", k, err)
	}
	return v, nil
}

// Set stores v under k.
func (t *Txn) Set(k, v []byte) error {
	if err := t.txn.Set(t.ns.key(k), v); err != nil {
		return fmt.Errorf("set %q: %w", k, err)
	}
	return nil
}

// Delete removes k; deleting a missing key is not an error.
func (t *Txn) Delete(k []byte) error {
	if err := t.txn.Delete(t.ns.key(k)); err != nil {
		return fmt.Errorf("delete %q: %w", k, err)
	}
	return nil
}

// Iterate is Namespace.Iterate inside this transaction.
func (t *Txn) Iterate(reverse bool, fn func(key, value []byte) error) error {
	return t.iterate(reverse, true, func(it *badger.Item, k []byte) error {
		return it.Value(func(v []byte) error { return fn(k, v) })
	})
}

// IterateFrom is Namespace.IterateFrom inside this transaction.
func (t *Txn) IterateFrom(start []byte, fn func(key, value []byte) error) error {
	return t.iterateFrom(start, false, true, func(it *badger.Item, k []byte) error {
		return it.Value(func(v []byte) error { return fn(k, v) })
	})
}

// IterateKeys is Namespace.IterateKeys inside this transaction.
func (t *Txn) IterateKeys(reverse bool, fn func(key []byte, size int64) error) error {
	return t.iterate(reverse, false, func(it *badger.Item, k []byte) error {
		return fn(k, it.ValueSize())
	})
}

func (t *Txn) iterate(reverse, values bool, fn func(it *badger.Item, key []byte) error) error {
	return t.iterateFrom(nil, reverse, values, fn)
}

// iterateFrom walks the keys of the namespace from start (forward only; nil: the first key).
func (t *Txn) iterateFrom(from []byte, reverse, values bool, fn func(it *badger.Item, key []byte) error) error {
	p := t.ns.keyPrefix()
	opts := badger.IteratorOptions{Prefix: p, PrefetchValues: values, PrefetchSize: 4}
	start := append(p[:len(p):len(p)], from...)
	if reverse {
		// badger's reverse Seek lands on the largest key <= the seek key and its Valid stops at the
		// first key outside Prefix: so seek to the successor of p without the Prefix option and
		// skip keys above the range. p ends with tagKey, so incrementing its last byte is safe.
		opts = badger.IteratorOptions{Reverse: true, PrefetchValues: values, PrefetchSize: 4}
		start = append([]byte(nil), p...)
		start[len(start)-1]++
	}
	it := t.txn.NewIterator(opts)
	defer it.Close()
	for it.Seek(start); it.Valid(); it.Next() {
		item := it.Item()
		k := item.Key()
		if !bytes.HasPrefix(k, p) {
			if reverse && bytes.Compare(k, p) > 0 {
				continue
			}
			break
		}
		err := fn(item, k[len(p):])
		if errors.Is(err, ErrStop) {
			return nil
		}
		if err != nil {
			return err
		}
	}
	return nil
}
