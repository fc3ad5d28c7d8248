package node

import (
	"errors"
	"fmt"
	"os"
	"strings"
)

// minBootstrapToken is the shortest admin token accepted from --admin-token-file (a guessable
// admin token is the whole cluster).
const minBootstrapToken = 24

// readBootstrapToken reads the admin token an operator supplies for hands-off bootstrap (a
// Kubernetes Secret or a compose-generated file, mounted into every node): the first leader of a
// new cluster creates the admin token with this value instead of a random one, and a joining node
// uses it as its join token. Surrounding white space is ignored.
func readBootstrapToken(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("node: admin token file: %w", err)
	}
	tok := strings.TrimSpace(string(b))
	switch {
	case tok == "":
		return "", fmt.Errorf("node: admin token file %s is empty", path)
	case len(tok) < minBootstrapToken:
		return "", fmt.Errorf("node: admin token in %s has %d characters; want at least %d (e.g. openssl rand -hex 32)", path, len(tok), minBootstrapToken)
	case strings.ContainsAny(tok, " \t\r\n"):
		return "", errors.New("node: admin token file holds more than one word")
	}
	return tok, nil
}
