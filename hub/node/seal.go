package node

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/driftline/driftline/hub/seal"
)

// loadSealKey loads DATA/seal.key; the first node of a new cluster (no state database yet, no
// --join) makes it. A joiner gets it with its promotion (adoptSealKey); a node of a cluster made
// before sealing has none until an operator copies one in (docs/upgrading.md), and then stores
// webhook secrets as given.
func (n *Node) loadSealKey() error {
	_, statErr := os.Stat(filepath.Join(n.cfg.DataDir, "db"))
	fresh := errors.Is(statErr, fs.ErrNotExist) && n.cfg.Join == ""
	k, err := seal.LoadOrGenerate(filepath.Join(n.cfg.DataDir, seal.FileName), fresh)
	if err != nil {
		return fmt.Errorf("node: seal key: %w", err)
	}
	n.sealKey = k
	return nil
}

// sealSecret seals a secret under the cluster's seal key before it enters a Raft command; a node
// without a key stores it as given (and says so).
func (n *Node) sealSecret(plain string) (string, error) {
	n.sealMu.RLock()
	k := n.sealKey
	n.sealMu.RUnlock()
	if k == nil {
		n.log.Warn("no seal key on this node: the secret is stored in clear in the Raft log and snapshots (docs/security.md)")
	}
	return k.Seal(plain)
}

// openSecret opens a stored secret (sealed, or stored in clear before sealing).
func (n *Node) openSecret(stored string) (string, error) {
	n.sealMu.RLock()
	k := n.sealKey
	n.sealMu.RUnlock()
	return k.Open(stored)
}

// sealKeyText is the seal key handed to a node with its promotion ("" without one).
func (n *Node) sealKeyText() string {
	n.sealMu.RLock()
	defer n.sealMu.RUnlock()
	if n.sealKey == nil {
		return ""
	}
	return n.sealKey.Text()
}

// adoptSealKey keeps the seal key a joining node received from the leader: written to
// DATA/seal.key and used from now on. An empty text (a leader without a key, or of an older
// release) changes nothing; a node that holds another key keeps its own and warns, since
// secrets sealed under either are then readable only where that key is.
func (n *Node) adoptSealKey(text string) error {
	if text == "" {
		return nil
	}
	k, err := seal.Parse(text)
	if err != nil {
		return fmt.Errorf("seal key from the leader: %w", err)
	}
	n.sealMu.Lock()
	defer n.sealMu.Unlock()
	if n.sealKey != nil {
		if n.sealKey.ID() != k.ID() {
			n.log.Warn("this node's seal key differs from the leader's: keeping its own", "own", n.sealKey.ID(), "leader", k.ID())
		}
		return nil
	}
	if err := k.Write(filepath.Join(n.cfg.DataDir, seal.FileName)); err != nil {
		return fmt.Errorf("write seal key: %w", err)
	}
	n.sealKey = k
	return nil
}
