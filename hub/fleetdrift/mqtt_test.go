package fleetdrift_test

import (
	"context"
	"errors"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/driftline/driftline/hub/broker"
	"github.com/driftline/driftline/hub/fleetdrift"
	"github.com/driftline/driftline/hub/protocol"
	"github.com/driftline/driftline/internal/testhelp"
	"github.com/driftline/driftline/shared/wire"
)

// deviceAuth lets device d1 connect with password "pw"; everything else is refused.
type deviceAuth struct{}

func (deviceAuth) Authenticate(user string, pw []byte) (broker.Principal, error) {
	if user == "d1" && string(pw) == "pw" {
		return broker.Principal{Kind: broker.Device, ID: user}, nil
	}
	return broker.Principal{}, errors.New("bad credentials")
}

// TestProfilesOverMQTT sends window profiles the way an agent does, on dl/v1/dev/d1/profile
// through the embedded broker, into the service via protocol.SubscribeProfiles and Enqueue.
func TestProfilesOverMQTT(t *testing.T) {
	s := newFleetSetup(t, fleetdrift.Config{})
	b, err := broker.New(broker.Config{Addr: "127.0.0.1:0", Auth: deviceAuth{}, Logger: testhelp.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	if err := protocol.SubscribeProfiles(b, wire.Default(), s.svc.Enqueue); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.svc.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })

	c := paho.NewClient(paho.NewClientOptions().AddBroker("tcp://" + b.Addr()).SetClientID("d1").SetUsername("d1").SetPassword("pw"))
	if tk := c.Connect(); !tk.WaitTimeout(5*time.Second) || tk.Error() != nil {
		t.Fatalf("connect: %v", tk.Error())
	}
	defer c.Disconnect(100)
	for _, payload := range [][]byte{windowProfile(t, 300, 28, "abc", 5), []byte("garbage")} {
		if tk := c.Publish(wire.Default().Profile("d1"), 1, false, payload); !tk.WaitTimeout(5*time.Second) || tk.Error() != nil {
			t.Fatalf("publish: %v", tk.Error())
		}
	}
	testhelp.WaitFor(t, 10*time.Second, "both profiles handled", func() bool {
		st := s.svc.Stats()
		return st[fleetdrift.ResultOK] == 1 && st[fleetdrift.ResultBad] == 1
	})
	d1, err := s.svc.Device("d1")
	if err != nil || len(d1.Models) != 1 || !d1.Models[0].Latest.Features["temp"].Drift || d1.Models[0].Latest.Rows != 300 {
		t.Fatalf("d1 after its profile over MQTT: %+v %v", d1, err)
	}
}
