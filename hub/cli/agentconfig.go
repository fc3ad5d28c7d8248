package cli

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
)

// DefaultBroker is the broker URL written into an agent config when the hub advertises none and
// --broker is not given.
const DefaultBroker = "tcp://127.0.0.1:1883"

// advertised reads what the hub tells its agents from GET /api/v1/cluster: the MQTT URLs it
// advertises (the members "advertise_mqtt", "mqtt" and "brokers", a list of URLs; nil when it
// advertises none) and its topic prefix ("topic_prefix"; "" when the hub does not say, which
// means the default).
func advertised(ctx context.Context, c *client) (brokers []string, prefix string, err error) {
	var st map[string]json.RawMessage
	if _, err := c.JSON(ctx, http.MethodGet, "/api/v1/cluster", nil, nil, &st); err != nil {
		return nil, "", err
	}
	if raw, ok := st["topic_prefix"]; ok {
		_ = json.Unmarshal(raw, &prefix) // a hub that says something else has no prefix to tell
	}
	for _, k := range []string{"advertise_mqtt", "mqtt", "brokers"} {
		var urls []string
		if raw, ok := st[k]; ok && json.Unmarshal(raw, &urls) == nil && len(urls) > 0 {
			return urls, prefix, nil
		}
	}
	return nil, prefix, nil
}

// trustedRoot reads the cluster's newest root of trust from GET /api/v1/keys/root.
func trustedRoot(ctx context.Context, c *client) (string, error) {
	var raw json.RawMessage
	if _, err := c.JSON(ctx, http.MethodGet, "/api/v1/keys/root", nil, nil, &raw); err != nil {
		return "", err
	}
	return string(raw), nil
}

// trustedKeys reads the hub's public signing keys from GET /api/v1/keys.
func trustedKeys(ctx context.Context, c *client) ([]string, error) {
	var page struct {
		Items []struct {
			PublicKey string `json:"public_key"`
		} `json:"items"`
	}
	if _, err := c.JSON(ctx, http.MethodGet, "/api/v1/keys", nil, nil, &page); err != nil {
		return nil, err
	}
	keys := make([]string, 0, len(page.Items))
	for _, k := range page.Items {
		if k.PublicKey != "" {
			keys = append(keys, k.PublicKey)
		}
	}
	return keys, nil
}

// splitURLs splits a comma-separated URL list, dropping empty items.
func splitURLs(s string) []string {
	var out []string
	for _, u := range strings.Split(s, ",") {
		if u = strings.TrimSpace(u); u != "" {
			out = append(out, u)
		}
	}
	return out
}
