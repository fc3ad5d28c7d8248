package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestPackages builds a tiny static program for each release architecture, packages it as the
// hub and the agent, and checks the packages (with dpkg-deb) and the checksums.
func TestPackages(t *testing.T) {
	dpkg, err := exec.LookPath("dpkg-deb")
	if err != nil {
		t.Skip("SKIPPED: dpkg-deb is not installed")
	}
	src := t.TempDir()
	os.WriteFile(filepath.Join(src, "main.go"), []byte("package main\nfunc main() {}\n"), 0o644)
	os.WriteFile(filepath.Join(src, "go.mod"), []byte("module tiny\ngo 1.22\n"), 0o644)
	dist := t.TempDir()
	for _, tg := range targets {
		goarch, goarm := tg.suffix, ""
		if tg.suffix == "armv7" {
			goarch, goarm = "arm", "7"
		}
		for _, name := range []string{"driftline", "driftline-agent"} {
			cmd := exec.Command("go", "build", "-o", filepath.Join(dist, name+"-linux-"+tg.suffix), ".")
			cmd.Dir = src
			cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+goarch, "GOARM="+goarm)
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("build %s %s: %v\n%s", name, tg.suffix, err, out)
			}
		}
	}
	if err := run("../..", dist, "v1.2.3-rc1"); err != nil {
		t.Fatal(err)
	}
	want := map[string][]string{
		"driftline-hub_1.2.3~rc1_armhf.deb":   {"./usr/bin/driftline", "./lib/systemd/system/driftline-hub.service", "./etc/driftline/hub.env"},
		"driftline-agent_1.2.3~rc1_arm64.deb": {"./usr/bin/driftline-agent", "./lib/systemd/system/driftline-agent.service"},
		"driftline-hub_1.2.3~rc1_amd64.deb":   {"./usr/bin/driftline"},
	}
	for deb, paths := range want {
		out, err := exec.Command(dpkg, "--contents", filepath.Join(dist, deb)).CombinedOutput()
		if err != nil {
			t.Fatalf("%s: %v\n%s", deb, err, out)
		}
		for _, p := range paths {
			if !strings.Contains(string(out), p) {
				t.Errorf("%s lacks %s:\n%s", deb, p, out)
			}
		}
		unit, err := exec.Command("sh", "-c", dpkg+" --fsys-tarfile "+filepath.Join(dist, deb)+" | tar -xO --wildcards './lib/systemd/system/*.service'").Output()
		if err != nil || !strings.Contains(string(unit), "ExecStart=/usr/bin/driftline") {
			t.Errorf("%s: unit does not start /usr/bin/driftline: %v\n%s", deb, err, unit)
		}
		info, _ := exec.Command(dpkg, "--info", filepath.Join(dist, deb)).CombinedOutput()
		if !strings.Contains(string(info), "postinst") || !strings.Contains(string(info), "prerm") {
			t.Errorf("%s lacks its maintainer scripts:\n%s", deb, info)
		}
	}
	sums, err := os.ReadFile(filepath.Join(dist, "SHA256SUMS"))
	if err != nil || strings.Count(string(sums), "\n") != 12 {
		t.Fatalf("SHA256SUMS: %v\n%s", err, sums)
	}
	cmd := exec.Command("sha256sum", "-c", "--quiet", "SHA256SUMS")
	cmd.Dir = dist
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("sha256sum -c: %v\n%s", err, out)
	}
	// A binary for the wrong machine is refused.
	arm64, _ := os.ReadFile(filepath.Join(dist, "driftline-linux-arm64"))
	os.WriteFile(filepath.Join(dist, "driftline-linux-armv7"), arm64, 0o755)
	if err := run("../..", dist, "1.0.0"); err == nil || !strings.Contains(err.Error(), "built for") {
		t.Fatalf("wrong-machine binary: %v", err)
	}
}
