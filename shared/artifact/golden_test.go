package artifact

// Pinned chunker output for randBytes(3, 1 MiB), and two gear table entries. These are part of
// the stored format: if they change, chunks stored under ChunkAlgo no longer dedupe.
var (
	goldenSizes = []int64{106587, 28060, 34492, 68296, 95691, 32399, 38714, 68784, 83230, 23856,
		67687, 77500, 70219, 105085, 70040, 71883, 6053}
	goldenGear0   uint64 = 0x79856f879a06fcc1
	goldenGear255 uint64 = 0x2879bc65782027db
)
