package main

import (
	"os/exec"
	"strings"
	"testing"
)

// TestNoHubDependencies keeps the agent binary small: it must not link anything under hub/,
// nor Raft, echo or the MQTT broker (SPEC section 1).
func TestNoHubDependencies(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	forbidden := []string{
		"github.com/driftline/driftline/hub/",
		"github.com/hashicorp/raft",
		"github.com/labstack/echo",
		"github.com/mochi-mqtt/server",
	}
	deps := strings.Fields(string(out))
	if len(deps) < 10 {
		t.Fatalf("go list returned %d packages: %s", len(deps), out)
	}
	for _, d := range deps {
		for _, f := range forbidden {
			if strings.HasPrefix(d, f) || d == strings.TrimSuffix(f, "/") {
				t.Errorf("driftline-agent links %s", d)
			}
		}
	}
}
