// Command release turns the cross-compiled binaries of `make release` into Debian packages and a
// SHA256SUMS file. It is its own Go module so that nfpm's dependencies stay out of Driftline's.
//
//	go run . -repo ../.. -dist ../../dist -version 1.2.3
//
// dist must hold driftline-linux-{amd64,arm64,armv7} and driftline-agent-linux-{...}; release
// writes driftline-hub_VERSION_ARCH.deb and driftline-agent_VERSION_ARCH.deb beside them, then
// SHA256SUMS over every binary and package (sha256sum -c format).
package main

import (
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/goreleaser/nfpm/v2"
	_ "github.com/goreleaser/nfpm/v2/deb" // registers the deb packager
	"github.com/goreleaser/nfpm/v2/files"
)

// targets are the release architectures: the suffix of the binaries and nfpm's arch name.
var targets = []struct {
	suffix, arch string
	machine      elf.Machine
}{
	{"amd64", "amd64", elf.EM_X86_64}, {"arm64", "arm64", elf.EM_AARCH64}, {"armv7", "arm7", elf.EM_ARM},
}

// checkStatic refuses a binary that is not a static Linux ELF for machine: a dynamically linked
// one (CGO_ENABLED=1 by mistake) would not start on a device without the same libc.
func checkStatic(path string, machine elf.Machine) error {
	f, err := elf.Open(path)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	defer f.Close()
	if f.Machine != machine {
		return fmt.Errorf("%s is built for %s, want %s", path, f.Machine, machine)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("%s is dynamically linked (build it with CGO_ENABLED=0)", path)
		}
	}
	return nil
}

func main() {
	repo := flag.String("repo", ".", "the Driftline source tree (for deploy/systemd and deploy/packaging)")
	dist := flag.String("dist", "dist", "the directory holding the binaries; packages and SHA256SUMS go here")
	version := flag.String("version", "", "the release version (required; a leading v is dropped)")
	flag.Parse()
	if err := run(*repo, *dist, *version); err != nil {
		fmt.Fprintln(os.Stderr, "release:", err)
		os.Exit(1)
	}
}

func run(repo, dist, version string) error {
	version = strings.TrimPrefix(version, "v")
	if version == "" {
		return errors.New("-version is required")
	}
	if version[0] < '0' || version[0] > '9' {
		version = "0.0.0~" + version // a git describe without a tag: Debian versions start with a digit
	}
	version = strings.ReplaceAll(version, "-", "~")
	tmp, err := os.MkdirTemp("", "driftline-release-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	for _, t := range targets {
		for _, p := range packages(repo, dist, t.suffix) {
			if err := checkStatic(p.binary, t.machine); err != nil {
				return err
			}
			path, err := build(p, version, t.arch, dist, tmp)
			if err != nil {
				return fmt.Errorf("%s %s: %w", p.name, t.suffix, err)
			}
			fmt.Println("wrote", path)
		}
	}
	return writeSums(dist)
}

// pkg describes one Debian package.
type pkg struct {
	name, description, binary, binaryDst, unit string
	config                                     map[string]string // dst -> src, config|noreplace
	postinstall, preremove                     string
}

func packages(repo, dist, suffix string) []pkg {
	pk := filepath.Join(repo, "deploy", "packaging")
	return []pkg{{
		name:        "driftline-hub",
		description: "Driftline hub: Raft-replicated model registry, rollouts and fleet telemetry for edge ML",
		binary:      filepath.Join(dist, "driftline-linux-"+suffix), binaryDst: "/usr/bin/driftline",
		unit:        filepath.Join(repo, "deploy", "systemd", "driftline-hub.service"),
		config:      map[string]string{"/etc/driftline/hub.env": filepath.Join(pk, "hub.env")},
		postinstall: filepath.Join(pk, "hub-postinstall.sh"), preremove: filepath.Join(pk, "hub-preremove.sh"),
	}, {
		name:        "driftline-agent",
		description: "Driftline edge agent: pulls signed models, validates inputs, reports drift and health",
		binary:      filepath.Join(dist, "driftline-agent-linux-"+suffix), binaryDst: "/usr/bin/driftline-agent",
		unit:        filepath.Join(repo, "deploy", "systemd", "driftline-agent.service"),
		postinstall: filepath.Join(pk, "agent-postinstall.sh"), preremove: filepath.Join(pk, "agent-preremove.sh"),
	}}
}

// build writes one .deb into dist and returns its path. The unit file is the one of
// deploy/systemd with the binary moved from /usr/local/bin (a hand install) to /usr/bin.
func build(p pkg, version, arch, dist, tmp string) (string, error) {
	unit, err := os.ReadFile(p.unit)
	if err != nil {
		return "", err
	}
	unitPath := filepath.Join(tmp, arch+"-"+filepath.Base(p.unit))
	if err := os.WriteFile(unitPath, []byte(strings.ReplaceAll(string(unit), "/usr/local/bin/", "/usr/bin/")), 0o644); err != nil {
		return "", err
	}
	contents := files.Contents{
		{Source: p.binary, Destination: p.binaryDst, FileInfo: &files.ContentFileInfo{Mode: 0o755}},
		{Source: unitPath, Destination: "/lib/systemd/system/" + filepath.Base(p.unit), FileInfo: &files.ContentFileInfo{Mode: 0o644}},
	}
	dsts := make([]string, 0, len(p.config))
	for dst := range p.config {
		dsts = append(dsts, dst)
	}
	sort.Strings(dsts)
	for _, dst := range dsts {
		contents = append(contents, &files.Content{Source: p.config[dst], Destination: dst, Type: files.TypeConfigNoReplace,
			FileInfo: &files.ContentFileInfo{Mode: 0o640}})
	}
	info := &nfpm.Info{
		Name: p.name, Arch: arch, Platform: "linux", Version: version, Section: "net", Priority: "optional",
		Maintainer: "Driftline <driftline@example.org>", Description: p.description,
		Homepage: "https://github.com/driftline/driftline", License: "Apache-2.0",
		Overridables: nfpm.Overridables{
			Depends:  []string{"adduser | passwd"},
			Contents: contents,
			Scripts:  nfpm.Scripts{PostInstall: p.postinstall, PreRemove: p.preremove},
		},
	}
	info = nfpm.WithDefaults(info)
	if err := nfpm.PrepareForPackager(info, "deb"); err != nil {
		return "", err
	}
	if err := nfpm.Validate(info); err != nil {
		return "", err
	}
	packager, err := nfpm.Get("deb")
	if err != nil {
		return "", err
	}
	path := filepath.Join(dist, packager.ConventionalFileName(info))
	f, err := os.Create(path)
	if err != nil {
		return "", err
	}
	if err := packager.Package(info, f); err != nil {
		f.Close()
		os.Remove(path)
		return "", err
	}
	return path, f.Close()
}

// writeSums writes dist/SHA256SUMS over every other regular file in dist.
func writeSums(dist string) error {
	entries, err := os.ReadDir(dist)
	if err != nil {
		return err
	}
	var b strings.Builder
	for _, e := range entries {
		if !e.Type().IsRegular() || e.Name() == "SHA256SUMS" {
			continue
		}
		f, err := os.Open(filepath.Join(dist, e.Name()))
		if err != nil {
			return err
		}
		h := sha256.New()
		_, err = io.Copy(h, f)
		f.Close()
		if err != nil {
			return err
		}
		fmt.Fprintf(&b, "%s  %s\n", hex.EncodeToString(h.Sum(nil)), e.Name())
	}
	return os.WriteFile(filepath.Join(dist, "SHA256SUMS"), []byte(b.String()), 0o644)
}
