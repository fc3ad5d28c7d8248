package kubernetes

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"sigs.k8s.io/yaml"
)

// TestManifestsDecodeStrictly decodes every document of hub.yaml into its Kubernetes API type,
// refusing unknown fields (a misspelt field is silently ignored by kubectl apply without
// --validate), and checks the hands-off bootstrap wiring.
func TestManifestsDecodeStrictly(t *testing.T) {
	b, err := os.ReadFile("hub.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var sts *appsv1.StatefulSet
	services := map[string]*corev1.Service{}
	var raftPolicy *networkingv1.NetworkPolicy
	for i, doc := range bytes.Split(b, []byte("\n---\n")) {
		var meta struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
		}
		if err := yaml.Unmarshal(doc, &meta); err != nil {
			t.Fatalf("document %d: %v", i, err)
		}
		switch meta.APIVersion + " " + meta.Kind {
		case "v1 Service":
			var s corev1.Service
			if err := yaml.UnmarshalStrict(doc, &s); err != nil {
				t.Fatalf("document %d (Service): %v", i, err)
			}
			services[s.Name] = &s
		case "apps/v1 StatefulSet":
			sts = &appsv1.StatefulSet{}
			if err := yaml.UnmarshalStrict(doc, sts); err != nil {
				t.Fatalf("document %d (StatefulSet): %v", i, err)
			}
		case "networking.k8s.io/v1 NetworkPolicy":
			var np networkingv1.NetworkPolicy
			if err := yaml.UnmarshalStrict(doc, &np); err != nil {
				t.Fatalf("document %d (NetworkPolicy): %v", i, err)
			}
			raftPolicy = &np
		default:
			t.Fatalf("document %d: unexpected %s %s", i, meta.APIVersion, meta.Kind)
		}
	}
	if raftPolicy == nil || len(raftPolicy.Spec.Ingress) == 0 || len(raftPolicy.Spec.Ingress[0].From) == 0 {
		t.Error("the Raft port (7000) must be closed to all but hub pods by a NetworkPolicy (docs/security.md)")
	}
	if sts == nil || services[sts.Spec.ServiceName] == nil || services["driftline-hub"] == nil {
		t.Fatalf("want the StatefulSet, its headless service and the client service; have %v", services)
	}
	if services[sts.Spec.ServiceName].Spec.ClusterIP != corev1.ClusterIPNone {
		t.Error("the peers service must be headless (stable pod DNS names for Raft)")
	}
	pod := sts.Spec.Template.Spec
	script := strings.Join(pod.Containers[0].Args, " ")
	var secretMount string
	for _, m := range pod.Containers[0].VolumeMounts {
		for _, v := range pod.Volumes {
			if v.Name == m.Name && v.Secret != nil && v.Secret.SecretName == "driftline-admin" {
				secretMount = m.MountPath
			}
		}
	}
	if secretMount == "" || !strings.Contains(script, "--admin-token-file "+secretMount+"/token") {
		t.Errorf("every pod must read the admin token from the driftline-admin secret (mounted at %q): %s", secretMount, script)
	}
	if !strings.Contains(script, "--join http://driftline-hub-0.") {
		t.Errorf("pods other than 0 must join pod 0: %s", script)
	}
	if !strings.Contains(script, "--peers") || !strings.Contains(script, "--dead-node-timeout") {
		t.Errorf("pod 0 must ask its peers before bootstrapping (--peers) and dead pods must be removed (--dead-node-timeout): %s", script)
	}
	if len(sts.Spec.VolumeClaimTemplates) == 0 || pod.Containers[0].ReadinessProbe == nil {
		t.Error("the StatefulSet needs a volume claim template and a readiness probe")
	}
}

// TestComposeFile checks the compose file's hands-off bootstrap: an init service writes the token
// and every hub waits for it and reads it. With docker compose installed it also runs `docker
// compose config`.
func TestComposeFile(t *testing.T) {
	path := filepath.Join("..", "compose", "docker-compose.yml")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Services map[string]struct {
			Command   []string       `json:"command"`
			Volumes   []string       `json:"volumes"`
			DependsOn map[string]any `json:"depends_on"`
		} `json:"services"`
		Volumes map[string]any `json:"volumes"`
	}
	if err := yaml.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	if _, ok := doc.Services["init"]; !ok {
		t.Fatal("no init service")
	}
	hubs := 0
	for name, s := range doc.Services {
		if name == "init" {
			continue
		}
		hubs++
		cmd := strings.Join(s.Command, " ")
		if !strings.Contains(cmd, "--admin-token-file /run/driftline/admin-token") || s.DependsOn["init"] == nil {
			t.Errorf("%s does not read the init service's token: %s", name, cmd)
		}
		if name != "hub1" && !strings.Contains(cmd, "--join http://hub1:8080") {
			t.Errorf("%s does not join hub1: %s", name, cmd)
		}
	}
	if hubs != 3 {
		t.Errorf("%d hubs, want 3", hubs)
	}
	if !strings.Contains(strings.Join(doc.Services["hub1"].Command, " "), "--peers http://hub2:8080,http://hub3:8080") {
		t.Error("hub1 must ask hub2 and hub3 before bootstrapping (--peers): with an empty volume it would start a second cluster")
	}
	t.Run("compose config", func(t *testing.T) { composeConfig(t, path) })
}

// composeCommand returns the Compose CLI installed here: `docker compose` (v2) or `docker-compose`
// (v1, Debian's docker-compose package, which `make ci-deps` installs), or nil.
func composeCommand() []string {
	if exec.Command("docker", "compose", "version").Run() == nil {
		return []string{"docker", "compose"}
	}
	if p, err := exec.LookPath("docker-compose"); err == nil {
		return []string{p}
	}
	return nil
}

// composeConfig validates the compose file with the Compose CLI's own schema and reference
// checks (`config -q`, no Docker daemon needed), and checks that the validator does refuse a
// copy of the file with an unknown service key, so a validator that accepts anything cannot pass.
func composeConfig(t *testing.T, path string) {
	cmd := composeCommand()
	if cmd == nil {
		t.Skip("SKIPPED: neither `docker compose` nor `docker-compose` is installed (make ci-deps installs docker-compose): the compose file is not validated")
	}
	run := func(file string) ([]byte, error) {
		args := append(append([]string{}, cmd[1:]...), "-f", file, "config", "-q")
		c := exec.Command(cmd[0], args...)
		c.Dir = filepath.Dir(file)
		return c.CombinedOutput()
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		t.Fatal(err)
	}
	if out, err := run(abs); err != nil {
		t.Fatalf("%s config: %v\n%s", strings.Join(cmd, " "), err, out)
	}
	b, _ := os.ReadFile(abs)
	bad := filepath.Join(filepath.Dir(abs), ".invalid-compose-test.yml")
	broken := strings.Replace(string(b), "  hub1:\n", "  hub1:\n    restart_policy_typo: always\n", 1)
	if broken == string(b) {
		t.Fatal("could not make the broken copy: no hub1 service line")
	}
	if err := os.WriteFile(bad, []byte(broken), 0o600); err != nil {
		t.Fatal(err)
	}
	defer os.Remove(bad)
	if out, err := run(bad); err == nil || !strings.Contains(string(out), "restart_policy_typo") {
		t.Fatalf("the validator accepted an unknown key: %v\n%s", err, out)
	}
}

// TestSystemdUnitsVerify runs systemd-analyze verify on the units, with the binaries they start
// stood in for by empty scripts (skipped loudly without systemd-analyze).
func TestSystemdUnitsVerify(t *testing.T) {
	sa, err := exec.LookPath("systemd-analyze")
	if err != nil {
		if os.Getenv("DRIFTLINE_INTEGRATION") == "1" {
			t.Fatal("systemd-analyze is not installed")
		}
		t.Skip("SKIPPED: systemd-analyze is not installed")
	}
	dir := t.TempDir()
	var units []string
	for _, bin := range []string{"driftline", "driftline-agent"} {
		os.WriteFile(filepath.Join(dir, bin), []byte("#!/bin/sh\n"), 0o755)
	}
	for _, u := range []string{"driftline-hub.service", "driftline-agent.service"} {
		b, err := os.ReadFile(filepath.Join("..", "systemd", u))
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, u)
		os.WriteFile(p, []byte(strings.ReplaceAll(string(b), "/usr/local/bin/", dir+"/")), 0o644)
		units = append(units, p)
	}
	out, err := exec.Command(sa, append([]string{"verify"}, units...)...).CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
}
