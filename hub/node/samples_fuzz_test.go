package node

import (
	"strings"
	"testing"

	"github.com/driftline/driftline/shared/profile"
)

// FuzzSampleProcessor feeds arbitrary contracts and samples to the processor: it must return a
// result or an error, never panic, and a profile it returns must decode and render as JSON.
func FuzzSampleProcessor(f *testing.F) {
	calib := strings.Replace(sensorContract, `"fields": [`, `"x-driftline": {"drift": {"calibrate": 3}}, "fields": [`, 1)
	f.Add(sensorContract, sensorCSV(10, 3), true)
	f.Add(sensorContract, sensorJSONL(10), false)
	f.Add(calib, sensorCSV(12, 0), true)
	f.Add(calib, sensorJSONL(9)+"{bad\n[1,2]\n", false)
	f.Add(`{"fields":[{"name":"a","type":"number","x-driftline":{"drift":{"calibrate":2}}}]}`, "a\n1\n2\nNaN\nINF\n3\n-INF\n", true)
	f.Add(`{"fields":[{"name":"a","type":"int"}]}`, "a\n1\n", true)
	f.Add(`{"fields":[{"name":"d","type":"date"},{"name":"b","type":"boolean"}],"primaryKey":["d"]}`, `[{"d":"2020-01-01","b":true},{"d":"2020-01-01","b":"x"}]`, false)
	f.Fuzz(func(t *testing.T, doc, sample string, csv bool) {
		format := "jsonl"
		if csv {
			format = "csv"
		}
		res, err := processSample([]byte(doc), strings.NewReader(sample), format)
		if err != nil {
			return
		}
		if res.InvalidRows > res.Rows {
			t.Fatalf("invalid %d > rows %d", res.InvalidRows, res.Rows)
		}
		if len(res.Profile) == 0 {
			return
		}
		p, err := profile.Decode(res.Profile)
		if err != nil {
			t.Fatalf("own profile does not decode: %v", err)
		}
		if p.Rows() > uint64(res.Rows-res.InvalidRows) {
			t.Fatalf("profile has %d rows, only %d valid", p.Rows(), res.Rows-res.InvalidRows)
		}
		if _, err := ProfileJSON(res.Profile); err != nil {
			t.Fatalf("render own profile: %v", err)
		}
	})
}

// FuzzProfileJSON renders arbitrary bytes: an error or JSON, never a panic.
func FuzzProfileJSON(f *testing.F) {
	res, err := processSample([]byte(sensorContract), strings.NewReader(sensorCSV(50, 0)), "csv")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(res.Profile)
	f.Add([]byte{})
	f.Add([]byte{profile.EncodingVersion})
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = ProfileJSON(b)
	})
}
