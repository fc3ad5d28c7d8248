package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"

	"gopkg.in/yaml.v3"
)

// AgentConfig is the file `driftline device add --agent-config FILE` writes: everything an agent
// needs to connect to the hub as that device. docs/cli.md documents the format; the agent's own
// config struct reads these keys.
type AgentConfig struct {
	// DeviceID is the device's id; it is also the MQTT client id and username.
	DeviceID string `yaml:"device_id"`
	// Token is the device token, shown by the hub only once; it is the MQTT password and the
	// bearer token for the HTTP API.
	Token string `yaml:"token"`
	// Brokers are the MQTT broker URLs to try in order (tcp:// or ssl://).
	Brokers []string `yaml:"brokers"`
	// TrustedRoot is the cluster's root of trust (root.json) from GET /api/v1/keys/root.
	TrustedRoot string `yaml:"trusted_root"`
	// TrustedKeys are fixed public keys (the older form of trust); device add no longer writes
	// them.
	TrustedKeys []string `yaml:"trusted_keys,omitempty"`
	// Hub is the hub's HTTP API URL.
	Hub string `yaml:"hub"`
	// TopicPrefix is the hub's MQTT topic prefix (`hub serve --topic-prefix`); written only when
	// it is not the default, which the agent assumes.
	TopicPrefix string `yaml:"topic_prefix,omitempty"`
}

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

// writeAgentConfig writes cfg as YAML to path with mode 0600 (it holds a secret), atomically.
func writeAgentConfig(path string, cfg AgentConfig) error {
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(cfg); err != nil {
		return fmt.Errorf("encode agent config: %w", err)
	}
	if err := enc.Close(); err != nil {
		return fmt.Errorf("encode agent config: %w", err)
	}
	head := "# driftline agent config for device " + cfg.DeviceID + ", written by `driftline device add`.\n" +
		"# It holds the device token: keep it secret.\n"
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.WriteString(head + buf.String()); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
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
