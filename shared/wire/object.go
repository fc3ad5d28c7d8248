package wire

import (
	"crypto/sha256"
	"fmt"
)

// Object collects the parts of one fetched object (frames with the same digest) in any order,
// and verifies the whole against the digest once every part is in. Memory: the object's size,
// at most MaxObjectSize. An Object is not safe for concurrent use.
type Object struct {
	digest [sha256.Size]byte
	total  uint32
	buf    []byte
	have   []bool
	left   int
	done   bool
}

// NewObject starts collecting the object that data frame f belongs to. Add f (and the other
// parts) to it afterwards.
func NewObject(f Frame) (*Object, error) {
	if f.Kind != FrameData {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, f.DigestString())
	}
	parts := max(1, (int(f.Total)+MaxPartSize-1)/MaxPartSize)
	return &Object{
		digest: f.Digest,
		total:  f.Total,
		buf:    make([]byte, f.Total),
		have:   make([]bool, parts),
		left:   parts,
	}, nil
}

// Add decompresses part f into the object. It reports whether the object is now complete and
// verified. A frame for another digest or size, or a not-found frame, is an error; a part seen
// before is ignored. When the last part is in and the bytes do not hash to the digest, Add
// returns ErrFrameDigest and the Object starts over empty.
func (o *Object) Add(f Frame) (done bool, err error) {
	if f.Kind == FrameNotFound {
		return false, fmt.Errorf("%w: %s", ErrNotFound, f.DigestString())
	}
	if f.Digest != o.digest || f.Total != o.total {
		return false, fmt.Errorf("%w: part of %s (%d bytes) added to %x (%d bytes)", ErrBadFrame, f.DigestString(), f.Total, o.digest, o.total)
	}
	if o.done {
		return true, nil
	}
	if err := f.validate(); err != nil {
		return false, err
	}
	i := int(f.Offset / MaxPartSize)
	if o.have[i] {
		return false, nil
	}
	plain, err := f.Decompress()
	if err != nil {
		return false, err
	}
	copy(o.buf[f.Offset:], plain)
	o.have[i] = true
	o.left--
	if o.left > 0 {
		return false, nil
	}
	if sha256.Sum256(o.buf) != o.digest {
		clear(o.have)
		o.left = len(o.have)
		return false, fmt.Errorf("%w: %x", ErrFrameDigest, o.digest)
	}
	o.done = true
	return true, nil
}

// Bytes returns the verified object, or nil while it is incomplete.
func (o *Object) Bytes() []byte {
	if !o.done {
		return nil
	}
	return o.buf
}
