package state

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/dgraph-io/badger/v4"
)

// A model version's tags live in one value of their own (pVersionTags), apart from the version
// document: a tag write then costs a merge of two sorted lists of bytes instead of a JSON decode
// and encode of the whole document with every tag in it (which was most of the state machine's
// work under a stream of tag writes, on every node). One value per version rather than one key
// per tag, because a prefix scan in badger walks every older version of each key still in the
// memtable, and tags are exactly the keys that get rewritten.
//
// Encoding: uvarint count, then count pairs of (uvarint length, key bytes, uvarint length, value
// bytes), keys strictly increasing, no empty value.

// maxTagKey bounds a tag key.
const maxTagKey = 128

// validTagKey accepts 1 to maxTagKey bytes.
func validTagKey(k string) error {
	if k == "" || len(k) > maxTagKey {
		return invalid("tag key %q: use 1 to %d bytes", k, maxTagKey)
	}
	return nil
}

// errBadTags is returned for a stored tag value this code did not write.
var errBadTags = errors.New("corrupt tags value")

// tagPair is one decoded pair; its slices point into the encoded value.
type tagPair struct{ k, v []byte }

// decodeTagPairs parses an encoded tag list without copying.
func decodeTagPairs(b []byte) ([]tagPair, error) {
	n, w := binary.Uvarint(b)
	if w <= 0 || n > uint64(len(b)) {
		return nil, errBadTags
	}
	b = b[w:]
	pairs := make([]tagPair, 0, n)
	field := func() ([]byte, error) {
		l, w := binary.Uvarint(b)
		if w <= 0 || l > uint64(len(b)-w) {
			return nil, errBadTags
		}
		f := b[w : w+int(l)]
		b = b[w+int(l):]
		return f, nil
	}
	for range n {
		k, err := field()
		if err != nil {
			return nil, err
		}
		v, err := field()
		if err != nil {
			return nil, err
		}
		if len(k) == 0 || len(v) == 0 || len(pairs) > 0 && bytes.Compare(pairs[len(pairs)-1].k, k) >= 0 {
			return nil, errBadTags
		}
		pairs = append(pairs, tagPair{k, v})
	}
	if len(b) != 0 {
		return nil, errBadTags
	}
	return pairs, nil
}

func appendTagPairs(dst []byte, pairs []tagPair) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(pairs)))
	for _, p := range pairs {
		dst = binary.AppendUvarint(dst, uint64(len(p.k)))
		dst = append(dst, p.k...)
		dst = binary.AppendUvarint(dst, uint64(len(p.v)))
		dst = append(dst, p.v...)
	}
	return dst
}

// mergeTags applies set (an empty value deletes) to the encoded list old and returns the new
// encoding, nil when no tag is left.
func mergeTags(old []byte, set map[string]string) ([]byte, error) {
	var cur []tagPair
	if len(old) > 0 {
		var err error
		if cur, err = decodeTagPairs(old); err != nil {
			return nil, err
		}
	}
	keys := make([]string, 0, len(set))
	for k := range set {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	out := make([]tagPair, 0, len(cur)+len(keys))
	i := 0
	for _, k := range keys {
		for i < len(cur) && string(cur[i].k) < k {
			out = append(out, cur[i])
			i++
		}
		if i < len(cur) && string(cur[i].k) == k {
			i++ // replaced or deleted
		}
		if v := set[k]; v != "" {
			out = append(out, tagPair{[]byte(k), []byte(v)})
		}
	}
	out = append(out, cur[i:]...)
	if len(out) == 0 {
		return nil, nil
	}
	return appendTagPairs(nil, out), nil
}

// encodeTags encodes a tag map (empty values dropped).
func encodeTags(tags map[string]string) []byte {
	b, _ := mergeTags(nil, tags) // nothing to decode, so no error
	return b
}

// tagSet merges the command's tags into the version's tag value. The result names the version
// only, so that a retried request finds its record without the state machine building the
// version's document on every node; the API reads the version back on the leader.
func tagSet(txn *badger.Txn, c TagSet) (any, *auditNote, error) {
	for k := range c.Tags {
		if err := validTagKey(k); err != nil {
			return nil, nil, err
		}
	}
	docKey := versionKey(pModelVersion, c.Model, c.Version)
	item, err := txn.Get(docKey)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return nil, nil, notFound("model:%s@%d", c.Model, c.Version)
	}
	if err != nil {
		return nil, nil, err
	}
	// A document written before tags had their own value may still hold them: move them out the
	// first time the version's tags change, so that a deleted tag cannot come back from it.
	var legacy bool
	if err := item.Value(func(b []byte) error { legacy = bytes.Contains(b, []byte(`"tags":`)); return nil }); err != nil {
		return nil, nil, err
	}
	set := c.Tags
	var doc *ModelVersion // the document to write back without its tags, if it had some
	if legacy {
		mv, err := getModelVersion(txn, c.Model, c.Version)
		if err != nil {
			return nil, nil, err
		}
		if len(mv.Tags) > 0 {
			set = make(map[string]string, len(mv.Tags)+len(c.Tags))
			for k, v := range mv.Tags {
				set[k] = v
			}
			for k, v := range c.Tags {
				set[k] = v
			}
			mv.Tags = nil
			doc = &mv
		}
	}
	key := versionKey(pVersionTags, c.Model, c.Version)
	var merged []byte
	item, err = txn.Get(key)
	switch {
	case errors.Is(err, badger.ErrKeyNotFound):
		merged = encodeTags(set)
	case err != nil:
		return nil, nil, err
	default:
		err = item.Value(func(old []byte) error {
			var err error
			merged, err = mergeTags(old, set)
			return err
		})
		if err != nil {
			return nil, nil, fmt.Errorf("tags of model:%s@%d: %w", c.Model, c.Version, err)
		}
	}
	// Every check is done: the writes start here.
	if doc != nil {
		if err := putJSON(txn, docKey, *doc); err != nil {
			return nil, nil, err
		}
	}
	if merged == nil {
		err = txn.Delete(key)
	} else {
		err = txn.Set(key, merged)
	}
	if err != nil {
		return nil, nil, err
	}
	return TagSetResult{Model: c.Model, Version: c.Version}, &auditNote{"model.version.tag", ModelNode(c.Model, c.Version), ""}, nil
}

// withTags fills in a version's tags from their value, over any left in a document written
// before tags had their own value. Tags stays nil when there are none.
func withTags(txn *badger.Txn, mv *ModelVersion) error {
	tags, err := versionTags(txn, mv.Model, mv.Version, mv.Tags)
	if err == nil {
		mv.Tags = tags
	}
	return err
}

// versionTags returns a version's tags, those in the tag value over those of legacy (a document's
// own tags), in a new map; nil when there are none.
func versionTags(txn *badger.Txn, model string, v int, legacy map[string]string) (map[string]string, error) {
	var tags map[string]string
	if len(legacy) > 0 {
		tags = maps.Clone(legacy)
	}
	item, err := txn.Get(versionKey(pVersionTags, model, v))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return tags, nil
	}
	if err != nil {
		return nil, err
	}
	err = item.Value(func(b []byte) error {
		pairs, err := decodeTagPairs(b)
		if err != nil {
			return fmt.Errorf("tags of model:%s@%d: %w", model, v, err)
		}
		if tags == nil && len(pairs) > 0 {
			tags = make(map[string]string, len(pairs))
		}
		for _, p := range pairs {
			tags[string(p.k)] = string(p.v)
		}
		return nil
	})
	return tags, err
}
