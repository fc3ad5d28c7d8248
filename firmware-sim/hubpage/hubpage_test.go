package hubpage

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func TestCountOnlineFollowsCursor(t *testing.T) {
	pages := map[string]string{
		"/api/v1/devices?limit=1000":            `{"items":[{"online":true},{"online":false}],"next_cursor":"a b"}`,
		"/api/v1/devices?limit=1000&cursor=a+b": `{"items":[{"online":true}],"next_cursor":""}`,
	}
	get := func(_ context.Context, path string, out any) error {
		p, ok := pages[path]
		if !ok {
			return errors.New("unexpected path " + path)
		}
		return json.Unmarshal([]byte(p), out)
	}
	n, err := CountOnline(context.Background(), get)
	if err != nil || n != 2 {
		t.Fatalf("CountOnline = %d, %v; want 2, nil", n, err)
	}
}

func TestMetricSamples(t *testing.T) {
	const text = `# HELP driftline_hub_x_total x
driftline_hub_x_total{path="shared"} 3
driftline_hub_x_total{path="device"} 4.5
driftline_hub_x_total_other 100
driftline_hub_y 7
`
	for _, c := range []struct {
		name, match string
		sum         float64
		lines       int
	}{
		{"driftline_hub_x_total", "", 7.5, 2},
		{"driftline_hub_x_total", `path="shared"`, 3, 1},
		{"driftline_hub_y", "", 7, 1},
		{"driftline_hub_z", "", 0, 0},
	} {
		sum, lines, err := MetricSamples(strings.NewReader(text), c.name, c.match)
		if err != nil || sum != c.sum || len(lines) != c.lines {
			t.Errorf("MetricSamples(%s, %q) = %v, %q, %v; want %v with %d lines", c.name, c.match, sum, lines, err, c.sum, c.lines)
		}
	}
}
