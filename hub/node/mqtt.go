package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/driftline/driftline/hub/api"
	"github.com/driftline/driftline/hub/broker"
	"github.com/driftline/driftline/hub/cluster"
	"github.com/driftline/driftline/hub/command"
	"github.com/driftline/driftline/hub/protocol"
	"github.com/driftline/driftline/hub/state"
	"github.com/driftline/driftline/shared/wire"
)

// mqttAuth authenticates MQTT clients against the replicated state: a device by its id
// (username) and token (password); an API token of role viewer as a viewer; an admin token as
// the hub (it may do everything). Other roles have no MQTT access. A token principal's id is the
// token's id (names are not unique), which is also its client-id namespace ("@viewer:ID",
// "@admin:ID"; broker.ClientIDAllowed); the user name of a token client is not checked.
type mqttAuth struct{ r state.Reader }

var errMQTTAuth = errors.New("bad credentials")

// MayFetchModel lets a device read the shared chunk topic of a model its desired state names
// (broker.ModelAuthorizer).
func (a mqttAuth) MayFetchModel(deviceID, model string) bool {
	sc, err := a.r.DeviceScope(deviceID)
	return err == nil && sc.ModelName(model)
}

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
		return broker.Principal{Kind: broker.Viewer, ID: p.ID}, nil
	case p.Kind == "token" && p.Role == state.RoleAdmin:
		return broker.Principal{Kind: broker.Admin, ID: p.ID}, nil
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
			Prefix: n.topics.Prefix(), Limits: n.cfg.BrokerLimits,
		}
		if n.cfg.TLSCert != "" { // device tokens never travel in clear unless a plain listener is asked for
			bcfg.Addr = n.cfg.MQTTPlainAddr
			bcfg.TLSAddr, bcfg.TLSCertFile, bcfg.TLSKeyFile = tlsMQTTAddr(n.cfg.MQTTAddr, n.cfg.MQTTSAddr), n.cfg.TLSCert, n.cfg.TLSKey
			bcfg.TLSClientCAFile = n.cfg.TLSClientCA
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
		Transport: transport, DB: n.db, Changes: n.store.Changes(), Reader: n.Reader(), Topics: n.topics,
		Apply: n.applyOrForward, CatchUp: n.catchUp, Logger: n.log, Registerer: n.registry, Keys: n.keys, DesiredTTL: n.cfg.DesiredTTL,
		SharedDelay: n.cfg.SharedChunkDelay, SharedGap: n.cfg.SharedChunkGap, LastSeenInterval: n.cfg.LastSeenInterval,
	})
	if err != nil {
		return err
	}
	n.proto = svc
	n.transport = transport
	if err := protocol.SubscribeProfiles(transport, n.topics, n.drift.Enqueue); err != nil {
		return err
	}
	if err := protocol.SubscribePredictionProfiles(transport, n.topics, n.predDrift.Enqueue); err != nil {
		return err
	}
	// Samples are handled by whichever node hears them (a follower forwards the staging command
	// to the leader); with an external broker they come through the shared subscription, once.
	topics := n.topics
	subscribe := transport.Subscribe
	if sh, ok := transport.(protocol.SharedSubscriber); ok {
		subscribe = sh.SubscribeShared
	}
	if err := subscribe(topics.AllDevices(wire.KindSample), func(topic string, payload []byte) {
		if kind, id, _, err := topics.Parse(topic); err == nil && kind == wire.KindSample {
			n.samples.Handle(topic, id, payload)
		}
	}); err != nil {
		return err
	}
	// Sample uploads (chunk frames): every frame of one upload must reach the same node, so
	// not a shared subscription; with an external broker every node hears them and only the
	// leader assembles (the collector's LeaderOnly).
	if err := transport.Subscribe(topics.AllDevices(wire.KindSamplePart), func(topic string, payload []byte) {
		if kind, id, _, err := topics.Parse(topic); err == nil && kind == wire.KindSamplePart {
			n.samples.HandlePart(id, payload)
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

// MQTTSAddr is the embedded broker's TLS listener address ("" when there is none).
func (n *Node) MQTTSAddr() string {
	if n.broker == nil {
		return ""
	}
	return n.broker.TLSAddr()
}

// MQTTURL is the URL agents on this host use to reach the embedded broker: ssl:// when it
// serves TLS, else tcp://.
func (n *Node) MQTTURL() string {
	if a := n.MQTTSAddr(); a != "" {
		return "ssl://" + advertise(a, n.cfg.RaftAddr)
	}
	if a := n.MQTTAddr(); a != "" {
		return "tcp://" + advertise(a, n.cfg.RaftAddr)
	}
	return ""
}

// applyOrForward proposes a command on the leader, or, on a follower, sends it to the leader
// as it is over the cluster client (cluster.PathApply), authenticated as a cluster peer: any
// command type, not only telemetry. A telemetry batch is split so that no forwarded command
// exceeds forwardLimit (one oversized batch must not stall telemetry).
func (n *Node) applyOrForward(ctx context.Context, env command.Envelope) error {
	if n.store.IsLeader() {
		_, err := n.store.Apply(ctx, env)
		return err
	}
	_, addr, ok := n.store.LeaderHTTP()
	if !ok || addr == "" {
		return errors.New("node: no leader known")
	}
	if env.Type != command.TypeDeviceTelemetry {
		if _, err := n.peers.Apply(ctx, addr, n.peerToken(), env); err != nil {
			if handled, lerr := n.legacyForward(ctx, addr, env, err); handled {
				return lerr
			}
			return fmt.Errorf("node: forward command type %d to the leader: %w", env.Type, err)
		}
		return nil
	}
	parts, dropped, err := splitTelemetry(env.Payload, n.forwardLimit())
	if err != nil {
		return err
	}
	if len(dropped) > 0 {
		n.log.Warn("telemetry too large to forward to the leader, left out", "devices", dropped, "limit", n.forwardLimit())
	}
	for _, p := range parts {
		part := env
		part.Payload = p
		if _, err := n.peers.Apply(ctx, addr, n.peerToken(), part); err != nil {
			if handled, lerr := n.legacyForward(ctx, addr, part, err); handled {
				if lerr != nil {
					return lerr
				}
				continue
			}
			return fmt.Errorf("node: forward telemetry to the leader: %w", err)
		}
	}
	return nil
}

// legacyForward sends a telemetry batch or a staged sample to the leader's API with this node's
// token, as builds before the cluster service did, when the typed call failed because the
// leader has no cluster service (an older build, during a rolling upgrade) or does not admit
// this node's credential (a node token from before node credentials, without a cluster CA).
// handled is false when that fallback does not apply.
func (n *Node) legacyForward(ctx context.Context, addr string, env command.Envelope, typedErr error) (handled bool, err error) {
	if !errors.Is(typedErr, cluster.ErrNoService) && !errors.Is(typedErr, cluster.ErrUnauthorized) {
		return false, nil
	}
	path := "/api/v1/devices/telemetry"
	switch env.Type {
	case command.TypeDeviceTelemetry:
	case command.TypeSampleStage:
		path = "/api/v1/devices/samples"
	default:
		return false, nil
	}
	tok, err := n.nodeToken()
	if err != nil {
		return true, err
	}
	if err := n.peers.PostJSON(ctx, n.peers.URL(addr, path), tok, json.RawMessage(env.Payload), nil); err != nil {
		return true, fmt.Errorf("node: the leader refused %s: %w", path, err)
	}
	return true, nil
}

// catchUp returns once this node has applied every write the cluster committed before the call:
// a barrier on the leader, the leader's read index on a follower (as the API's strong reads).
func (n *Node) catchUp(ctx context.Context) error {
	if n.store.IsLeader() {
		return n.store.Barrier(ctx)
	}
	_, addr, ok := n.store.LeaderHTTP()
	if !ok || addr == "" {
		return errors.New("no leader is known")
	}
	idx, err := n.peers.ReadIndex(ctx, addr, n.peerToken())
	if err != nil {
		return fmt.Errorf("read index from the leader: %w", err)
	}
	return n.store.WaitApplied(ctx, idx)
}

// NodeTokenFile holds the node token the leader gave this node when it joined, or that this
// node made for itself as leader (ensureNodeToken): its credential for the cluster service
// without a cluster CA (api.IsNodeCredential).
const NodeTokenFile = "node.token"

// peerToken is this node's credential for the leader's cluster service: its node token, "" when
// it has none (with a cluster CA its certificate is what counts).
func (n *Node) peerToken() string {
	b, err := os.ReadFile(filepath.Join(n.cfg.DataDir, NodeTokenFile))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

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

// createNodeToken asks the cluster (with the join token, which must then be an admin token: a
// leader older than join tokens does not hand out node tokens) for an admin token of this
// node's own and keeps it in DATA/node.token (0600).
func (n *Node) createNodeToken(ctx context.Context) error {
	path := filepath.Join(n.cfg.DataDir, NodeTokenFile)
	if _, err := os.Stat(path); err == nil {
		return nil
	}
	body := api.TokenRequest{Name: "node-" + strings.NewReplacer(":", "-").Replace(n.cfg.NodeID), Role: state.RoleAdmin}
	var out api.TokenCreated
	if err := n.peers.PostJSON(ctx, strings.TrimRight(n.cfg.Join, "/")+"/api/v1/tokens", n.cfg.JoinToken, body, &out); err != nil {
		return fmt.Errorf("create node token: %w", err)
	}
	return writeSecret(path, out.Token)
}

// writeSecret writes a token to path (0600), replacing it atomically.
func writeSecret(path, secret string) error {
	if err := os.WriteFile(path+".tmp", []byte(secret+"\n"), 0o600); err != nil {
		return err
	}
	return os.Rename(path+".tmp", path)
}
