// Package enrol is the enrolment file shared by both binaries: `driftline device add
// --agent-config FILE` writes it (hub/cli) and `driftline-agent` reads it as its config file
// (agent/config reads the same keys). It imports nothing of either side.
package enrol

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"

	"gopkg.in/yaml.v3"
)

// Config is the enrolment file: everything an agent needs to connect to the hub as one device.
// docs/cli.md documents the format; the agent's own config (agent/config) reads these keys.
type Config struct {
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

// Write writes cfg as YAML to path with mode 0600 (it holds a secret), atomically, under a
// comment naming the device.
func Write(path string, cfg Config) error {
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

// Read reads an enrolment file written by Write.
func Read(path string) (Config, error) {
	var cfg Config
	b, err := os.ReadFile(path)
	if err != nil {
		return cfg, err
	}
	if err := yaml.Unmarshal(b, &cfg); err != nil {
		return cfg, fmt.Errorf("enrolment file %s: %w", path, err)
	}
	return cfg, nil
}
