// Package mosquittotest runs a real Mosquitto for tests, configured with a password file and an
// ACL the caller renders (hub/broker's WriteMosquittoPasswd and WriteMosquittoACL), on a free
// loopback port, stopped when the test ends. Without the mosquitto binary the test skips loudly,
// unless DRIFTLINE_INTEGRATION=1 (make ci installs it), where that is a failure.
package mosquittotest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/driftline/driftline/internal/freeport"
	"github.com/driftline/driftline/internal/hubproc"
)

// Files are the access files Mosquitto reads.
type Files struct {
	Passwd, ACL []byte
	// Listener is extra configuration of the listener (lines after "listener"), read at Start.
	Listener string
}

// Options are Start's settings beyond the access files.
type Options struct {
	// Persistence turns Mosquitto's persistence on (as deploy/mosquitto configures it), in a
	// directory of the test's: sessions, their queued messages and retained messages survive a
	// restart of the broker that saved them (on a clean stop; Kill loses what was not saved).
	Persistence bool
}

// Broker is a running Mosquitto.
type Broker struct {
	t               testing.TB
	bin, confFile   string
	cmd             *exec.Cmd
	port            int
	pwFile, aclFile string
	exited          chan error
	out             *hubproc.Output
	probeUser       string
	probePass       string
}

// Binary returns the path of mosquitto, or skips (fails under DRIFTLINE_INTEGRATION=1) with
// what did not run.
func Binary(t testing.TB, what string) string {
	t.Helper()
	if p, err := exec.LookPath("mosquitto"); err == nil {
		return p
	}
	for _, p := range []string{"/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	msg := "MOSQUITTO NOT INSTALLED: " + what + " did not run (make ci-deps installs it)"
	if os.Getenv("DRIFTLINE_INTEGRATION") == "1" {
		t.Fatal(msg)
	}
	t.Skip("!!! " + msg + " !!!")
	return ""
}

// Start runs Mosquitto with files and returns once it accepts probeUser with probePass.
// what names the test for the skip message.
func Start(t testing.TB, what string, files Files, probeUser, probePass string) *Broker {
	t.Helper()
	return StartWith(t, what, files, probeUser, probePass, Options{})
}

// StartWith is Start with options.
func StartWith(t testing.TB, what string, files Files, probeUser, probePass string, opts Options) *Broker {
	t.Helper()
	bin := Binary(t, what)
	dir := t.TempDir()
	b := &Broker{t: t, bin: bin, port: freeport.Port(t), pwFile: filepath.Join(dir, "passwd"), aclFile: filepath.Join(dir, "acl"),
		probeUser: probeUser, probePass: probePass}
	b.write(files)
	persistence := "persistence false\n"
	if opts.Persistence {
		persistence = fmt.Sprintf("persistence true\npersistence_location %s/\nmax_queued_messages 4096\n", dir)
	}
	conf := fmt.Sprintf("listener %d 127.0.0.1\n%sallow_anonymous false\npassword_file %s\nacl_file %s\n%slog_dest stdout\nlog_type all\n",
		b.port, files.Listener, b.pwFile, b.aclFile, persistence)
	if os.Geteuid() == 0 {
		conf += "user root\n" // as root Mosquitto would switch to user mosquitto, who cannot read t.TempDir()
	}
	b.confFile = filepath.Join(dir, "mosquitto.conf")
	if err := os.WriteFile(b.confFile, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	b.out = &hubproc.Output{}
	b.run()
	t.Cleanup(func() {
		if b.cmd != nil {
			_ = b.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-b.exited:
			case <-time.After(5 * time.Second):
				_ = b.cmd.Process.Kill()
				<-b.exited
			}
		}
		if t.Failed() {
			t.Logf("mosquitto output:\n%s", b.out.String())
		}
	})
	b.WaitAccepts(probeUser, probePass)
	return b
}

func (b *Broker) run() {
	b.cmd = exec.Command(b.bin, "-c", b.confFile)
	b.cmd.Stdout, b.cmd.Stderr = b.out, b.out
	if err := b.cmd.Start(); err != nil {
		b.t.Fatalf("start mosquitto: %v", err)
	}
	exited := make(chan error, 1)
	cmd := b.cmd
	go func() { exited <- cmd.Wait() }()
	b.exited = exited
}

// Kill stops the broker with SIGKILL (it saves nothing) and waits for it to exit.
func (b *Broker) Kill() {
	b.t.Helper()
	_ = b.cmd.Process.Kill()
	<-b.exited
	b.cmd = nil
}

// Restart starts a killed broker again, on the same port with the same configuration and
// persistence directory, and returns once it accepts the probe user.
func (b *Broker) Restart() {
	b.t.Helper()
	b.run()
	b.WaitAccepts(b.probeUser, b.probePass)
}

// WaitAccepts returns once Mosquitto accepts user with pass (after Start, or after a Reload,
// which Mosquitto applies asynchronously), failing the test after 10 s.
func (b *Broker) WaitAccepts(user, pass string) {
	b.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		select {
		case err := <-b.exited:
			b.t.Fatalf("mosquitto exited: %v\n%s", err, b.out.String())
		default:
		}
		c := paho.NewClient(paho.NewClientOptions().AddBroker(b.URL()).SetClientID("probe-" + user).
			SetUsername(user).SetPassword(pass).SetConnectTimeout(time.Second))
		tok := c.Connect()
		if tok.WaitTimeout(2*time.Second) && tok.Error() == nil {
			c.Disconnect(0)
			return
		}
		if time.Now().After(deadline) {
			b.t.Fatalf("mosquitto did not accept %s within 10s: %v\n%s", user, tok.Error(), b.out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// URL is the broker's tcp:// URL.
func (b *Broker) URL() string { return fmt.Sprintf("tcp://127.0.0.1:%d", b.port) }

// Reload replaces the access files and makes Mosquitto read them again (SIGHUP).
func (b *Broker) Reload(files Files) {
	b.write(files)
	_ = b.cmd.Process.Signal(syscall.SIGHUP)
}

func (b *Broker) write(files Files) {
	for f, data := range map[string][]byte{b.pwFile: files.Passwd, b.aclFile: files.ACL} {
		if err := os.WriteFile(f, data, 0o600); err != nil {
			b.t.Fatal(err)
		}
	}
}
