package hubpage

import (
	"context"
	"encoding/json"
	"errors"
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
