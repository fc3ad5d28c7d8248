package broker

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// mosquittoBinary finds Mosquitto. Without it the test skips loudly, unless
// DRIFTLINE_INTEGRATION=1 (set by `make ci`, which installs it), where that is a failure.
func mosquittoBinary(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("mosquitto"); err == nil {
		return p
	}
	for _, p := range []string{"/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	msg := "MOSQUITTO NOT INSTALLED: the external-broker ACL tests did not run (make ci-deps installs it)"
	if os.Getenv("DRIFTLINE_INTEGRATION") == "1" {
		t.Fatal(msg)
	}
	t.Skip("!!! " + msg + " !!!")
	return ""
}

// syncBuffer collects a process's output.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// freePort returns a TCP port that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// startMosquitto runs Mosquitto with the password and ACL files rendered by this package for the
// tests' users, and returns its URL once it accepts the hub user.
func startMosquitto(t *testing.T) string {
	bin := mosquittoBinary(t)
	dir := t.TempDir()

	users := make([]string, 0, len(testCreds))
	for u := range testCreds {
		users = append(users, u)
	}
	sort.Strings(users)
	creds := make([]Cred, 0, len(users))
	for _, u := range users {
		creds = append(creds, Cred{User: u, Password: testCreds[u]})
	}
	var pw, acl bytes.Buffer
	if err := WriteMosquittoPasswd(&pw, creds); err != nil {
		t.Fatal(err)
	}
	if err := WriteMosquittoACL(&acl, DefaultPrefix, []string{userDevA, userDevB}, []string{userViewer}, userHub); err != nil {
		t.Fatal(err)
	}
	pwFile, aclFile, confFile := filepath.Join(dir, "passwd"), filepath.Join(dir, "acl"), filepath.Join(dir, "mosquitto.conf")
	for f, b := range map[string][]byte{pwFile: pw.Bytes(), aclFile: acl.Bytes()} {
		if err := os.WriteFile(f, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	port := freePort(t)
	conf := fmt.Sprintf("listener %d 127.0.0.1\nallow_anonymous false\npassword_file %s\nacl_file %s\npersistence false\nlog_dest stdout\nlog_type all\n",
		port, pwFile, aclFile)
	if os.Geteuid() == 0 {
		conf += "user root\n" // as root Mosquitto would switch to user mosquitto, which cannot read t.TempDir()
	}
	if err := os.WriteFile(confFile, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}

	var out syncBuffer
	cmd := exec.Command(bin, "-c", confFile)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start mosquitto: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("mosquitto output:\n%s", out.String())
		}
	})

	url := fmt.Sprintf("tcp://127.0.0.1:%d", port)
	deadline := time.Now().Add(10 * time.Second)
	for {
		select {
		case err := <-exited:
			t.Fatalf("mosquitto exited: %v\n%s", err, out.String())
		default:
		}
		c, err := connect(t, clientOpts(url, "probe", userHub).SetConnectTimeout(time.Second))
		if err == nil {
			c.Disconnect(0)
			return url
		}
		if time.Now().After(deadline) {
			t.Fatalf("mosquitto did not accept the hub user within 10s: %v\n%s", err, out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestMosquittoACL runs the embedded broker's ACL cases against a real Mosquitto configured with
// the files this package renders.
func TestMosquittoACL(t *testing.T) {
	url := startMosquitto(t)
	runACLSuite(t, url, false)
}

func TestMosquittoPasswdMatchesMosquittoPasswdTool(t *testing.T) {
	// Reference line written by mosquitto_passwd 2.0.11 (`mosquitto_passwd -c -b f dev-1 s3cret`).
	const ref = "$7$101$i4TfTEKZoPquO0/Q$RpsWIxFdUce5zr0l/9vV43NtaGvPTwGCH4F9OchXcxUnyPq30llqRmEf+sTegs+2CZdaHFNARtRnA09vTh7MpQ=="
	parts := strings.Split(ref, "$")
	salt, err := base64Std(parts[3])
	if err != nil {
		t.Fatal(err)
	}
	got, err := mosquittoHash("s3cret", salt, 101)
	if err != nil {
		t.Fatal(err)
	}
	if got != ref {
		t.Fatalf("hash:\n got %s\nwant %s", got, ref)
	}
	if other, _ := mosquittoHash("s3creT", salt, 101); other == ref {
		t.Fatal("a different password gave the same hash")
	}
}
