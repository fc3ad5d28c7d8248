// Package zstdx holds the process-wide zstd encoder and decoder that Driftline shares for chunks,
// profiles and buffered reports, with a bound on decoded size against decompression bombs.
//
// EncodeAll and DecodeAll of klauspost/compress are safe for concurrent use, so one encoder and one
// decoder serve the whole process (see ../shared/PITFALLS.md).
package zstdx

import (
	"errors"
	"fmt"
	"runtime"
	"sync"

	"github.com/klauspost/compress/zstd"
)

// MaxDecoded is the largest plain size Decode accepts: a chunk is at most 256 KiB, a profile
// or a report batch a few MiB; 16 MiB leaves room without letting a bomb through.
const MaxDecoded = 16 << 20

// ErrTooLarge is returned when a frame declares or produces more than the allowed plain size.
var ErrTooLarge = errors.New("zstd: decoded size over limit")

var (
	once    sync.Once
	encoder *zstd.Encoder
	decoder *zstd.Decoder
)

func setup() {
	var err error
	// One encoder state per core (at most 4): EncodeAll from parallel goroutines (chunk
	// uploads, a pull's frames) would otherwise take turns; each state costs ~2 MB with the
	// small window below, so an edge device stays within its memory goal.
	encoder, err = zstd.NewWriter(nil,
		zstd.WithEncoderConcurrency(min(runtime.GOMAXPROCS(0), 4)),
		zstd.WithLowerEncoderMem(true),
		zstd.WithWindowSize(1<<20),
		zstd.WithEncoderLevel(zstd.SpeedDefault))
	if err != nil {
		panic(fmt.Sprintf("zstd encoder: %v", err)) // only bad static options can fail
	}
	decoder, err = zstd.NewReader(nil,
		zstd.WithDecoderConcurrency(0),
		zstd.WithDecoderMaxMemory(MaxDecoded),
		zstd.WithDecoderMaxWindow(8<<20))
	if err != nil {
		panic(fmt.Sprintf("zstd decoder: %v", err))
	}
}

// Encode appends the zstd frame of src to dst and returns it.
func Encode(dst, src []byte) []byte {
	once.Do(setup)
	return encoder.EncodeAll(src, dst)
}

// Decode appends the plain bytes of the zstd frame src to dst. It refuses frames whose plain
// size would exceed limit (at most MaxDecoded; limit <= 0 means MaxDecoded).
func Decode(dst, src []byte, limit int) ([]byte, error) {
	once.Do(setup)
	if limit <= 0 || limit > MaxDecoded {
		limit = MaxDecoded
	}
	var hdr zstd.Header
	if err := hdr.Decode(src); err != nil {
		return nil, fmt.Errorf("zstd header: %w", err)
	}
	if hdr.HasFCS && hdr.FrameContentSize > uint64(limit) {
		return nil, fmt.Errorf("%w: frame declares %d bytes, limit %d", ErrTooLarge, hdr.FrameContentSize, limit)
	}
	out, err := decoder.DecodeAll(src, dst)
	if err != nil {
		if errors.Is(err, zstd.ErrDecoderSizeExceeded) || errors.Is(err, zstd.ErrWindowSizeExceeded) {
			return nil, fmt.Errorf("%w: %v", ErrTooLarge, err)
		}
		return nil, fmt.Errorf("zstd decode: %w", err)
	}
	if len(out)-len(dst) > limit {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, len(out)-len(dst), limit)
	}
	return out, nil
}
