// Package rowsbench holds the ingestion benchmarks: reading JSONL and validating it (and
// profiling it, with shared/profile) against encoding/json decoding of the same rows into maps.
// They live apart from package rows so that its tests do not depend on the profile package.
//
//	go test -run '^$' -bench . ./shared/contract/rows/rowsbench
package rowsbench
