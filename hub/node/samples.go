package node

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/driftline/driftline/hub/api"
	"github.com/driftline/driftline/shared/contract"
	"github.com/driftline/driftline/shared/contract/rows"
	"github.com/driftline/driftline/shared/reference"
)

// NewSampleProcessor returns the SampleProcessor the API runs on a dataset version's upload:
// it parses the contract (a refused contract is an error wrapping api.ErrBadInput that lists
// every problem with its JSON path) and builds the reference profile with shared/reference
// (format "csv" or "jsonl"; "jsonl" also reads a JSON array), which validates, profiles and,
// when the contract sets x-driftline.drift.calibrate, calibrates in flat memory. A sample that
// cannot give a reference (no rows, no valid row, too few valid rows to calibrate) is an error
// wrapping api.ErrBadSample that names the first problems; a low valid share is a warning.
// A sample that cannot seek is spooled for calibration into spoolDir ("" means the system's
// temporary directory; the hub passes a directory inside its data dir).
func NewSampleProcessor(spoolDir string) api.SampleProcessor {
	return func(contractJSON []byte, sample io.Reader, format string) (api.SampleResult, error) {
		return processSampleIn(spoolDir, contractJSON, sample, format)
	}
}

// processSample is processSampleIn the system's temporary directory.
func processSample(contractJSON []byte, sample io.Reader, format string) (api.SampleResult, error) {
	return processSampleIn("", contractJSON, sample, format)
}

func processSampleIn(spoolDir string, contractJSON []byte, sample io.Reader, format string) (api.SampleResult, error) {
	schema, err := contract.Parse(contractJSON)
	if err != nil {
		var ce *contract.ContractError
		if errors.As(err, &ce) {
			msgs := make([]string, len(ce.Problems))
			for i, p := range ce.Problems {
				msgs[i] = p.String()
			}
			return api.SampleResult{}, fmt.Errorf("%w: contract refused (%d problems): %s", api.ErrBadInput, len(msgs), strings.Join(msgs, "; "))
		}
		return api.SampleResult{}, fmt.Errorf("%w: contract: %v", api.ErrBadInput, err)
	}
	var f rows.Format
	switch format {
	case "csv":
		f = rows.FormatCSV
	case "jsonl":
		f = rows.FormatJSON // JSONL, or a JSON array told apart by its first byte
	default:
		return api.SampleResult{}, fmt.Errorf("%w: sample format %q: send csv or jsonl", api.ErrBadInput, format)
	}
	res, err := reference.Build(schema, sample, f, reference.Options{TempDir: spoolDir})
	if errors.Is(err, reference.ErrBadSample) {
		return api.SampleResult{}, fmt.Errorf("%w: %v", api.ErrBadSample, err)
	}
	if err != nil {
		return api.SampleResult{}, err
	}
	return api.SampleResult{ContractDigest: schema.Digest(), Rows: res.Rows, InvalidRows: res.InvalidRows,
		Profile: res.Profile.Encode(), Notes: res.Notes, Warnings: res.Warnings}, nil
}
