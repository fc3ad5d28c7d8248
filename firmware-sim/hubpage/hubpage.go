// Package hubpage reads the hub's paged device list for the firmware-sim benchmarks (demo's
// bench-fleet and loadgen's bench-load), which each hold their own API client.
package hubpage

import (
	"context"
	"net/url"
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
