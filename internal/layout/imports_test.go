package layout

import (
	"bufio"
	"bytes"
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/driftline/driftline/"

// TestAgentAndHubApart: no package under agent/ depends on one under hub/ and none under hub/ on
// one under agent/, counting test dependencies (`go list -deps -test`): the agent binary never
// carries hub code, the hub never agent code, and a test that runs one against the other lives
// in systemtest/. Shared code is in shared/.
func TestAgentAndHubApart(t *testing.T) {
	for _, side := range []struct{ from, forbidden string }{
		{"agent", "hub"},
		{"hub", "agent"},
	} {
		t.Run(side.from, func(t *testing.T) {
			pkgs := goList(t, "./"+side.from+"/...")
			if len(pkgs) < 5 {
				t.Fatalf("go list ./%s/... found %d packages", side.from, len(pkgs))
			}
			for _, p := range pkgs {
				for _, dep := range goList(t, "-deps", "-test", p) {
					if under(dep, side.forbidden) {
						t.Errorf("%s depends on %s (tests included)", p, dep)
					}
				}
			}
		})
	}
}

// under reports whether the import path pkg (or a test variant of it, "p [q.test]") is in the
// module's top-level folder dir.
func under(pkg, dir string) bool {
	pkg, _, _ = strings.Cut(pkg, " ")
	rest, ok := strings.CutPrefix(pkg, module)
	return ok && (rest == dir || strings.HasPrefix(rest, dir+"/"))
}

// goList runs `go list args` from the module root and returns the listed packages.
func goList(t *testing.T, args ...string) []string {
	t.Helper()
	cmd := exec.Command("go", append([]string{"list"}, args...)...)
	cmd.Dir = "../.."
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	var pkgs []string
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); l != "" {
			pkgs = append(pkgs, l)
		}
	}
	return pkgs
}
