package cli

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/driftline/driftline/hub/broker"
	"github.com/driftline/driftline/internal/freeport"
	"github.com/driftline/driftline/internal/testhelp"
)

// TestServeBrokerLimitFlag: --mqtt-max-retained reaches the embedded broker of a real node: with
// a cap of 1, a device's retained messages on two more topics are refused and counted.
func TestServeBrokerLimitFlag(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	httpAddr, mqttAddr := freeport.Addr(t), freeport.Addr(t)
	env := map[string]string{"DRIFTLINE_DATA": dir, "DRIFTLINE_RAFT": freeport.Addr(t), "DRIFTLINE_MQTT_MAX_RETAINED": "1"}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan result, 1)
	go func() {
		done <- runCLICtx(t, ctx, env, "hub", "serve", "--http", httpAddr, "--mqtt", mqttAddr, "--log-level", "error")
	}()
	defer func() {
		cancel()
		select {
		case r := <-done:
			if r.code != 0 {
				t.Errorf("hub serve exited %d: %s", r.code, r.stderr)
			}
		case <-time.After(30 * time.Second):
			t.Error("hub serve did not stop")
		}
	}()
	var admin string
	testhelp.WaitFor(t, 30*time.Second, "admin token", func() bool {
		b, err := os.ReadFile(filepath.Join(dir, "admin.token"))
		admin = strings.TrimSpace(string(b))
		return err == nil && admin != ""
	})
	client := map[string]string{"DRIFTLINE_HUB": "http://" + httpAddr, "DRIFTLINE_DATA": dir}
	var r result
	testhelp.WaitFor(t, 30*time.Second, "device added", func() bool {
		r = runCLI(t, client, "device", "add", "edge-1")
		return r.code == 0
	})
	m := regexp.MustCompile(`token: (\S+)`).FindStringSubmatch(r.stdout)
	if m == nil {
		t.Fatalf("device add printed no token:\n%s", r.stdout)
	}
	c := paho.NewClient(paho.NewClientOptions().AddBroker("tcp://" + mqttAddr).SetClientID("edge-1").
		SetUsername("edge-1").SetPassword(m[1]).SetAutoReconnect(false))
	if tk := c.Connect(); !tk.WaitTimeout(10*time.Second) || tk.Error() != nil {
		t.Fatalf("device connect: %v", tk.Error())
	}
	defer c.Disconnect(100)
	for _, k := range []string{"status", "drift/a", "drift/b"} {
		if tk := c.Publish("dl/v1/dev/edge-1/"+k, 1, true, []byte(`{}`)); !tk.WaitTimeout(10*time.Second) || tk.Error() != nil {
			t.Fatalf("publish %s: %v", k, tk.Error())
		}
	}
	want := fmt.Sprintf(`%s{reason="retained_cap"} 2`, broker.MetricRejected)
	testhelp.WaitFor(t, 10*time.Second, "retained_cap refusals counted", func() bool {
		resp, err := http.Get("http://" + httpAddr + "/metrics")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return strings.Contains(string(b), want)
	})
}

func TestServeBrokerLimitErrors(t *testing.T) {
	cases := []struct {
		name string
		env  map[string]string
		args []string
		want string
	}{
		{"zero connect timeout", nil, []string{"--mqtt-connect-timeout", "0s"}, "--mqtt-connect-timeout"},
		{"negative pending", nil, []string{"--mqtt-max-pending", "-1"}, "--mqtt-max-pending"},
		{"negative rate", map[string]string{"DRIFTLINE_MQTT_DEVICE_RATE": "-5"}, nil, "--mqtt-device-rate"},
		{"rate not a number", map[string]string{"DRIFTLINE_MQTT_DEVICE_RATE": "fast"}, nil, "DRIFTLINE_MQTT_DEVICE_RATE"},
		{"burst below one", nil, []string{"--mqtt-device-burst", "0.5"}, "--mqtt-device-burst"},
		{"negative retained cap", nil, []string{"--mqtt-max-retained", "-2"}, "--mqtt-max-retained"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := runCLI(t, tc.env, append([]string{"hub", "serve"}, tc.args...)...)
			if r.code != ExitUsage || !strings.Contains(r.stderr, tc.want) {
				t.Errorf("exit %d, stderr %q; want %d naming %q", r.code, r.stderr, ExitUsage, tc.want)
			}
		})
	}
}

// TestServeBrokerLimitMapping: on the command line 0 means no cap; broker.Limits says that with
// a negative number (its 0 is the default).
func TestServeBrokerLimitMapping(t *testing.T) {
	o := serveOptions{mqttConnectTimeout: time.Second, mqttDeviceBurst: 3}
	l, err := o.brokerLimits()
	if err != nil {
		t.Fatal(err)
	}
	if l.MaxPendingSockets >= 0 || l.MaxDeviceRate >= 0 || l.MaxRetainedPerDevice >= 0 || l.DeviceBurst != 3 || l.ConnectTimeout != time.Second {
		t.Fatalf("limits %+v: want no caps, burst 3, 1s", l)
	}
}
