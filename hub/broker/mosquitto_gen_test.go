package broker

import (
	"bytes"
	"encoding/base64"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/driftline/driftline/shared/wire"
)

var update = flag.Bool("update", false, "rewrite testdata golden files")

func base64Std(s string) ([]byte, error) { return base64.StdEncoding.DecodeString(s) }

// TestWriteMosquittoACLGolden renders the example ACL kept in testdata/ (an example for deploy/).
func TestWriteMosquittoACLGolden(t *testing.T) {
	var buf bytes.Buffer
	if err := WriteMosquittoACL(&buf, "", []string{"edge-berlin-01", "edge-berlin-02"}, []string{"grafana"}, "driftline-hub"); err != nil {
		t.Fatal(err)
	}
	golden := filepath.Join("testdata", "mosquitto.acl")
	if *update {
		if err := os.WriteFile(golden, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(buf.Bytes(), want) {
		t.Fatalf("rendered ACL differs from %s (run with -update if intended):\n%s", golden, buf.String())
	}
	for _, forbidden := range []string{"edge-berlin-01/desired", "edge-berlin-01/chunk", "topic write dl/v1/#", "topic readwrite dl/v1/dev"} {
		if strings.Contains(buf.String(), forbidden) {
			t.Errorf("ACL grants %q", forbidden)
		}
	}
}

func TestWriteMosquittoPasswd(t *testing.T) {
	var buf bytes.Buffer
	creds := []Cred{{"dev-1", "tok-1"}, {"hub", "tok-hub"}}
	if err := WriteMosquittoPasswd(&buf, creds); err != nil {
		t.Fatal(err)
	}
	line := regexp.MustCompile(`^([^:]+):\$7\$101\$([A-Za-z0-9+/=]{16})\$([A-Za-z0-9+/=]{88})$`)
	lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	if len(lines) != len(creds) {
		t.Fatalf("%d lines, want %d:\n%s", len(lines), len(creds), buf.String())
	}
	salts := map[string]bool{}
	for i, l := range lines {
		m := line.FindStringSubmatch(l)
		if m == nil || m[1] != creds[i].User {
			t.Fatalf("line %d %q is not a mosquitto $7$ line for %s", i, l, creds[i].User)
		}
		salt, err := base64Std(m[2])
		if err != nil {
			t.Fatal(err)
		}
		want, _ := mosquittoHash(creds[i].Password, salt, 101)
		if l != creds[i].User+":"+want {
			t.Errorf("line %d does not verify with its password", i)
		}
		salts[m[2]] = true
	}
	if len(salts) != len(creds) {
		t.Error("salts repeat")
	}
}

func TestMosquittoWritersRefuseBadNames(t *testing.T) {
	cases := []struct {
		name    string
		devices []string
		viewers []string
		hub     string
		creds   []Cred
	}{
		{name: "newline in device", devices: []string{"a\ntopic readwrite #"}, hub: "hub"},
		{name: "wildcard device", devices: []string{"+"}, hub: "hub"},
		{name: "slash device", devices: []string{"a/b"}, hub: "hub"},
		{name: "space device", devices: []string{"a b"}, hub: "hub"},
		{name: "empty hub", hub: ""},
		{name: "viewer with newline", viewers: []string{"v\nuser x"}, hub: "hub"},
		{name: "colon in passwd user", hub: "hub", creds: []Cred{{"a:b", "x"}}},
		{name: "empty passwd user", hub: "hub", creds: []Cred{{"", "x"}}},
	}
	for _, c := range cases {
		var err error
		if c.creds != nil {
			err = WriteMosquittoPasswd(&bytes.Buffer{}, c.creds)
		} else {
			err = WriteMosquittoACL(&bytes.Buffer{}, "", c.devices, c.viewers, c.hub)
		}
		if !errors.Is(err, ErrBadUser) {
			t.Errorf("%s: err = %v, want ErrBadUser", c.name, err)
		}
	}
	if err := WriteMosquittoACL(&bytes.Buffer{}, "a/#", nil, nil, "hub"); !errors.Is(err, ErrConfig) {
		t.Errorf("bad prefix: err = %v", err)
	}
}

// FuzzWriteMosquittoACL checks that no device or viewer name can add a line of its own to the
// rendered file: whatever the names, the file has exactly the lines the rules call for, or the
// writer refuses.
func FuzzWriteMosquittoACL(f *testing.F) {
	for _, s := range []string{"dev-1", "a\nuser hub", "+", "#", "a b", "é", "dev\x00", " x", "viewer\r"} {
		f.Add(s, "viewer")
		f.Add("dev", s)
	}
	f.Fuzz(func(t *testing.T, device, viewer string) {
		var buf bytes.Buffer
		if err := WriteMosquittoACL(&buf, "", []string{device}, []string{viewer}, "hub"); err != nil {
			if !errors.Is(err, ErrBadUser) {
				t.Fatalf("unexpected error kind: %v", err)
			}
			return
		}
		lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
		want := 3 + 3 + 4 + 4 + len(DeviceWriteKinds) // header and blank, hub, viewer, device blocks
		if len(lines) != want {
			t.Fatalf("%d lines, want %d:\n%s", len(lines), want, buf.String())
		}
		for _, l := range lines {
			if strings.HasPrefix(l, "user ") && l != "user hub" && l != "user "+viewer && l != "user "+device {
				t.Fatalf("injected user line %q", l)
			}
		}
	})
}

// TestMosquittoACLLetsDevicesWriteEveryKind checks that the rendered Mosquitto ACL lets a device
// publish every device-to-hub kind of the protocol: a kind missing from it is denied by Mosquitto
// without an error the agent sees (MQTT 3.1.1 acknowledges a denied QoS 1 publish), so its
// reports vanish (reliability finding 12: prediction_drift, performance and sample were missing).
func TestMosquittoACLLetsDevicesWriteEveryKind(t *testing.T) {
	var buf bytes.Buffer
	if err := WriteMosquittoACL(&buf, "", []string{"dev-1"}, nil, "hub"); err != nil {
		t.Fatal(err)
	}
	acl := buf.String()
	topics := wire.Default()
	for k := wire.KindStatus; k < 255; k++ {
		level := k.String()
		if k.FromHub() || strings.HasPrefix(level, "Kind(") {
			continue // only the hub publishes it, or no kind has this number
		}
		if !strings.Contains(acl, "topic write "+topics.DevicePrefix("dev-1")+level+"\n") {
			t.Errorf("the ACL does not let a device write %q:\n%s", level, acl)
		}
	}
}
