// Package creds reads the device ids and tokens firmware-sim connects with. A broker with ACLs
// (the hub's embedded one) lets a device publish only under its own topics, so the simulated
// firmware of a device connects as that device: user name = device id, password = its token.
package creds

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"

	"gopkg.in/yaml.v3"

	"github.com/driftline/driftline/shared/wire"
)

var (
	// ErrFormat is a credentials file of none of the accepted shapes, or with a bad entry.
	ErrFormat = errors.New("credentials: bad file")
	// ErrDuplicate is a device id given twice with different tokens.
	ErrDuplicate = errors.New("credentials: device given twice")
)

// MaxFileBytes bounds one credentials file.
const MaxFileBytes = 16 << 20

// Credential is one device's MQTT identity.
type Credential struct {
	// ID is the device id: the MQTT user name.
	ID string `yaml:"id"`
	// Token is the device token: the MQTT password.
	Token string `yaml:"token"`
	// Brokers are the broker URLs an agent config names (empty for other shapes).
	Brokers []string `yaml:"brokers,omitempty"`
}

// File is the list shape, also what fleet mode writes: `devices: [{id, token}, ...]`.
type File struct {
	// Devices are the credentials in order.
	Devices []Credential `yaml:"devices"`
}

// Load reads credentials from files or directories (every *.yaml and *.yml file in a
// directory, by name). A file is an agent config (`device_id`, `token`, `brokers`, as
// `driftline device add --agent-config` writes), a list `[{id, token}]`, a mapping `devices:
// [{id, token}]`, or a mapping of id to token. The result keeps file order, without repeats.
func Load(paths ...string) ([]Credential, error) {
	var out []Credential
	seen := map[string]string{}
	for _, p := range paths {
		files := []string{p}
		if st, err := os.Stat(p); err == nil && st.IsDir() {
			files = nil
			for _, pat := range []string{"*.yaml", "*.yml"} {
				m, _ := filepath.Glob(filepath.Join(p, pat))
				files = append(files, m...)
			}
			sort.Strings(files)
		}
		for _, f := range files {
			cs, err := loadFile(f)
			if err != nil {
				return nil, err
			}
			for _, c := range cs {
				if tok, ok := seen[c.ID]; ok {
					if tok != c.Token {
						return nil, fmt.Errorf("%w: %s in %s", ErrDuplicate, c.ID, f)
					}
					continue
				}
				seen[c.ID] = c.Token
				out = append(out, c)
			}
		}
	}
	return out, nil
}

func loadFile(path string) ([]Credential, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("credentials: %w", err)
	}
	defer fh.Close()
	b, err := io.ReadAll(io.LimitReader(fh, MaxFileBytes+1))
	if err != nil {
		return nil, fmt.Errorf("credentials %s: %w", path, err)
	}
	if len(b) > MaxFileBytes {
		return nil, fmt.Errorf("%w: %s: larger than %d bytes", ErrFormat, path, MaxFileBytes)
	}
	cs, err := Parse(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return cs, nil
}

// Parse reads one credentials document (see Load for the shapes).
func Parse(b []byte) ([]Credential, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrFormat, err)
	}
	if len(doc.Content) != 1 {
		return nil, fmt.Errorf("%w: empty", ErrFormat)
	}
	n := doc.Content[0]
	var cs []Credential
	switch {
	case n.Kind == yaml.SequenceNode:
		if err := decodeList(n, &cs); err != nil {
			return nil, err
		}
	case n.Kind == yaml.MappingNode && has(n, "device_id"):
		var ac struct {
			DeviceID string   `yaml:"device_id"`
			Token    string   `yaml:"token"`
			Brokers  []string `yaml:"brokers"`
		}
		if err := n.Decode(&ac); err != nil {
			return nil, fmt.Errorf("%w: agent config: %v", ErrFormat, err)
		}
		cs = []Credential{{ID: ac.DeviceID, Token: ac.Token, Brokers: ac.Brokers}}
	case n.Kind == yaml.MappingNode && has(n, "devices"):
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == "devices" {
				if err := decodeList(n.Content[i+1], &cs); err != nil {
					return nil, err
				}
			}
		}
	case n.Kind == yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if v.Kind != yaml.ScalarNode {
				return nil, fmt.Errorf("%w: line %d: want id: token", ErrFormat, v.Line)
			}
			cs = append(cs, Credential{ID: k.Value, Token: v.Value})
		}
	default:
		return nil, fmt.Errorf("%w: line %d: want a list or a mapping", ErrFormat, n.Line)
	}
	for _, c := range cs {
		if err := wire.ValidateName("device id", c.ID); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrFormat, err)
		}
		if c.Token == "" {
			return nil, fmt.Errorf("%w: device %s has no token", ErrFormat, c.ID)
		}
	}
	return cs, nil
}

func decodeList(n *yaml.Node, cs *[]Credential) error {
	if n.Kind != yaml.SequenceNode {
		return fmt.Errorf("%w: line %d: want a list of {id, token}", ErrFormat, n.Line)
	}
	for _, item := range n.Content {
		var c struct {
			ID       string `yaml:"id"`
			DeviceID string `yaml:"device_id"`
			Token    string `yaml:"token"`
		}
		if err := item.Decode(&c); err != nil {
			return fmt.Errorf("%w: line %d: %v", ErrFormat, item.Line, err)
		}
		if c.ID == "" {
			c.ID = c.DeviceID
		}
		*cs = append(*cs, Credential{ID: c.ID, Token: c.Token})
	}
	return nil
}

func has(n *yaml.Node, key string) bool {
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return true
		}
	}
	return false
}

// Save writes creds in the list shape to path with mode 0600 (tokens are secrets), atomically.
func Save(path string, cs []Credential) error {
	b, err := yaml.Marshal(File{Devices: cs})
	if err != nil {
		return fmt.Errorf("credentials: %w", err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("credentials: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("credentials: %w", err)
	}
	return nil
}
