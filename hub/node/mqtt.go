package node

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/driftline/driftline/hub/api"
	"github.com/driftline/driftline/hub/broker"
	"github.com/driftline/driftline/hub/command"
	"github.com/driftline/driftline/hub/protocol"
	"github.com/driftline/driftline/hub/state"
	"github.com/driftline/driftline/shared/wire"
)

// mqttAuth authenticates MQTT clients against the replicated state: a device by its id
// (username) and token (password); an API token of role viewer as a viewer; an admin token as
// the hub (it may do everything). Other roles have no MQTT access.
type mqttAuth struct{ r state.Reader }

var errMQTTAuth = errors.New("bad credentials")

func (a mqttAuth) Authenticate(username string, password []byte) (broker.Principal, error) {
	if len(password) == 0 {
		return broker.Principal{}, errMQTTAuth
	}
	p, err := a.r.PrincipalByTokenHash(api.HashToken(string(password)))
	if err != nil {
		return broker.Principal{}, errMQTTAuth
	}
	switch {
	case p.Kind == "device" && p.ID == username:
		return broker.Principal{Kind: broker.Device, ID: p.ID}, nil
	case p.Kind == "token" && p.Role == state.RoleViewer:
		return broker.Principal{Kind: broker.Viewer, ID: p.Name}, nil
	case p.Kind == "token" && p.Role == state.RoleAdmin:
		return broker.Principal{Kind: broker.Hub, ID: p.Name}, nil
	}
	return broker.Principal{}, errMQTTAuth
}

// startMQTT starts the embedded broker (or connects to the external one) and the protocol
// service on it.
func (n *Node) startMQTT() error {
	var transport protocol.Transport
	switch {
	case len(n.cfg.Brokers) > 0:
		pt, err := protocol.DialPaho(protocol.PahoConfig{URLs: n.cfg.Brokers, ClientID: "driftline-hub-" + n.cfg.NodeID, Logger: n.log})
		if err != nil {
			return err
		}
		n.paho = pt
		transport = pt
	case n.cfg.MQTTAddr != "":
		bcfg := broker.Config{
			Addr: n.cfg.MQTTAddr, DB: n.db, Auth: mqttAuth{n.Reader()}, Registerer: n.registry, Logger: n.log,
		}
		if n.cfg.TLSCert != "" {
			bcfg.TLSAddr, bcfg.TLSCertFile, bcfg.TLSKeyFile = tlsMQTTAddr(n.cfg.MQTTAddr, n.cfg.MQTTSAddr), n.cfg.TLSCert, n.cfg.TLSKey
		}
		b, err := broker.New(bcfg)
		if err != nil {
			return err
		}
		n.broker = b
		transport = b
	default:
		return nil
	}
	svc, err := protocol.Start(protocol.Config{
		Transport: transport, DB: n.db, Reader: n.Reader(), Topics: wire.Default(),
		Apply: n.applyOrForward, Logger: n.log, Registerer: n.registry,
		OnDeviceRemoved: func(id string) {
			if n.broker != nil {
				n.broker.Revoke(id)
			}
		},
	})
	if err != nil {
		return err
	}
	n.proto = svc
	n.transport = transport
	if err := protocol.SubscribeProfiles(transport, wire.Default(), n.drift.Enqueue); err != nil {
		return err
	}
	topics := wire.Default()
	if err := transport.Subscribe(topics.AllDevices(wire.KindSample), func(topic string, payload []byte) {
		if kind, id, _, err := topics.Parse(topic); err == nil && kind == wire.KindSample {
			n.samples.Handle(topic, id, payload)
		}
	}); err != nil {
		return err
	}
	return nil
}

// tlsMQTTAddr is the MQTTS listener: explicit, else port 8883 beside a plain 1883, else the plain
// port + 1.
func tlsMQTTAddr(plain, explicit string) string {
	if explicit != "" {
		return explicit
	}
	host, port, err := net.SplitHostPort(plain)
	if err != nil {
		return ":8883"
	}
	p, _ := strconv.Atoi(port)
	switch p {
	case 1883:
		p = 8883
	case 0:
	default:
		p++
	}
	return net.JoinHostPort(host, strconv.Itoa(p))
}

// MQTTAddr is the embedded broker's plain listener address ("" when there is none).
func (n *Node) MQTTAddr() string {
	if n.broker == nil {
		return ""
	}
	return n.broker.Addr()
}

// MQTTURL is the URL agents on this host use to reach the embedded broker.
func (n *Node) MQTTURL() string {
	if a := n.MQTTAddr(); a != "" {
		return "tcp://" + advertise(a, n.cfg.RaftAddr)
	}
	return ""
}

// applyOrForward proposes a command on the leader, or sends a telemetry batch (or a device's
// staged sample) to the leader's API from a follower, authenticated with this node's token.
func (n *Node) applyOrForward(ctx context.Context, env command.Envelope) error {
	if n.store.IsLeader() {
		_, err := n.store.Apply(ctx, env)
		return err
	}
	path := "/api/v1/devices/telemetry"
	switch env.Type {
	case command.TypeDeviceTelemetry:
	case command.TypeSampleStage:
		path = "/api/v1/devices/samples"
	default:
		return fmt.Errorf("node: only telemetry and samples are forwarded, not command type %d", env.Type)
	}
	_, addr, ok := n.store.LeaderHTTP()
	if !ok {
		return errors.New("node: no leader known")
	}
	tok, err := n.nodeToken()
	if err != nil {
		return err
	}
	scheme := "http"
	if n.cfg.TLSCert != "" {
		scheme = "https"
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, scheme+"://"+addr+path, bytes.NewReader(env.Payload))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+tok)
	cl := &http.Client{Timeout: 10 * time.Second}
	res, err := cl.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(res.Body, 4096))
		return fmt.Errorf("node: leader refused %s: %s: %s", path, res.Status, strings.TrimSpace(string(b)))
	}
	return nil
}

// NodeTokenFile holds the admin token a joined node created for itself (node-to-node calls).
const NodeTokenFile = "node.token"

// nodeToken returns the token this node authenticates to other nodes with.
func (n *Node) nodeToken() (string, error) {
	for _, f := range []string{NodeTokenFile, AdminTokenFile} {
		b, err := os.ReadFile(filepath.Join(n.cfg.DataDir, f))
		if err == nil {
			return strings.TrimSpace(string(b)), nil
		}
	}
	if n.cfg.JoinToken != "" {
		return n.cfg.JoinToken, nil
	}
	return "", errors.New("node: no node token: neither node.token nor admin.token in the data dir")
}

// createNodeToken asks the cluster (with the join token) for an admin token of this node's own
// and keeps it in DATA/node.token (0600).
func (n *Node) createNodeToken(ctx context.Context) error {
	path := filepath.Join(n.cfg.DataDir, NodeTokenFile)
	if _, err := os.Stat(path); err == nil {
		return nil
	}
	body, _ := json.Marshal(api.TokenRequest{Name: "node-" + strings.NewReplacer(":", "-").Replace(n.cfg.NodeID), Role: state.RoleAdmin})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimRight(n.cfg.Join, "/")+"/api/v1/tokens", bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+n.cfg.JoinToken)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(res.Body, 1<<20))
	if res.StatusCode != http.StatusCreated {
		return fmt.Errorf("create node token: %s: %s", res.Status, strings.TrimSpace(string(b)))
	}
	var out api.TokenCreated
	if err := json.Unmarshal(b, &out); err != nil {
		return err
	}
	return os.WriteFile(path, []byte(out.Token+"\n"), 0o600)
}
