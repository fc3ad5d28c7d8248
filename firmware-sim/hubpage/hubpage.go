// Package hubpage reads what the firmware-sim benchmarks (demo's bench-fleet and loadgen's
// bench-load) read of the hub: its paged device list and its /metrics. Each benchmark keeps its
// own API client and hands the fetched page in.
package hubpage

import (
	"bufio"
	"context"
	"io"
	"net/url"
	"strconv"
	"strings"
)

// Get fetches path (relative to the hub's URL, with the admin token) and decodes the JSON
// answer into out; a non-2xx answer is an error.
type Get func(ctx context.Context, path string, out any) error

// CountOnline counts the devices the hub shows online, page by page through GET
// /api/v1/devices. On an error it returns the count so far with the error.
func CountOnline(ctx context.Context, get Get) (int, error) {
	n, cursor := 0, ""
	for {
		var page struct {
			Items []struct {
				Online bool `json:"online"`
			} `json:"items"`
			NextCursor string `json:"next_cursor"`
		}
		path := "/api/v1/devices?limit=1000"
		if cursor != "" {
			path += "&cursor=" + url.QueryEscape(cursor)
		}
		if err := get(ctx, path, &page); err != nil {
			return n, err
		}
		for _, d := range page.Items {
			if d.Online {
				n++
			}
		}
		if page.NextCursor == "" || len(page.Items) == 0 {
			return n, nil
		}
		cursor = page.NextCursor
	}
}

// MetricSamples reads the Prometheus text exposition r (the hub's /metrics) and returns the sum of
// the samples of the metric family name whose line contains match ("" for all), and those
// samples' lines without the family name (labels and value). A line of another family that
// shares the prefix does not count.
func MetricSamples(r io.Reader, name, match string) (float64, []string, error) {
	sum := 0.0
	var lines []string
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name) {
			continue
		}
		rest := line[len(name):]
		if rest == "" || (rest[0] != ' ' && rest[0] != '{') {
			continue // another family sharing the prefix
		}
		if match != "" && !strings.Contains(rest, match) {
			continue
		}
		f := strings.Fields(line)
		if v, err := strconv.ParseFloat(f[len(f)-1], 64); err == nil {
			sum += v
			lines = append(lines, rest)
		}
	}
	return sum, lines, sc.Err()
}
