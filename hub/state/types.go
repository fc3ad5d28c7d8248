package state

import "encoding/json"

// Dataset is a named dataset; its versions are numbered 1, 2, ...
type Dataset struct {
	Name          string `json:"name"`
	Description   string `json:"description,omitempty"`
	CreatedBy     string `json:"created_by"`
	CreatedAt     int64  `json:"created_at"`
	LatestVersion int    `json:"latest_version"`
}

// VersionRef names one version of a dataset or model.
type VersionRef struct {
	Dataset string `json:"dataset,omitempty"`
	Model   string `json:"model,omitempty"`
	Version int    `json:"version"`
}

// DatasetVersion is one immutable version of a dataset: its contract, the reference profile of
// its training sample and where the sample came from.
type DatasetVersion struct {
	Dataset      string          `json:"dataset"`
	Version      int             `json:"version"`
	Contract     json.RawMessage `json:"contract,omitempty"`
	ContractHash string          `json:"contract_digest,omitempty"`
	// Profile is the encoded reference profile (binary, base64 in JSON); ProfileDigest its sha256.
	Profile       []byte       `json:"profile,omitempty"`
	ProfileDigest string       `json:"profile_digest,omitempty"`
	SampleSHA256  string       `json:"sample_sha256,omitempty"`
	SampleBytes   int64        `json:"sample_bytes"`
	SampleRows    int64        `json:"sample_rows"`
	InvalidRows   int64        `json:"invalid_rows"`
	SourceURI     string       `json:"source_uri,omitempty"`
	Parents       []VersionRef `json:"parents,omitempty"`
	Notes         []string     `json:"notes,omitempty"`
	CreatedBy     string       `json:"created_by"`
	CreatedAt     int64        `json:"created_at"`
}

// Model is a named model; its versions are numbered 1, 2, ...
type Model struct {
	Name          string         `json:"name"`
	Description   string         `json:"description,omitempty"`
	CreatedBy     string         `json:"created_by"`
	CreatedAt     int64          `json:"created_at"`
	LatestVersion int            `json:"latest_version"`
	Aliases       map[string]int `json:"aliases"`
}

// Model version statuses.
const (
	StatusRegistered = "registered"
	StatusApproved   = "approved"
	StatusDeprecated = "deprecated"
)

// Approval records who approved a model version.
type Approval struct {
	By string `json:"by"`
	// ByToken is the id of the approving token.
	ByToken string `json:"by_token,omitempty"`
	At      int64  `json:"at"`
	Comment string `json:"comment,omitempty"`
}

// Signature is a signature of a model version, of one of two kinds (Kind).
type Signature struct {
	KeyID string `json:"key_id"`
	Sig   string `json:"sig"`
	// Kind is SigApproval for an approval signature over artifact.Approval by one of the
	// cluster's online keys (what agents of this release verify). Empty for a legacy signature
	// over the manifest bytes (artifact.Sign) by the approving leader's node key, as every
	// approval of the previous release made and every approval still makes: desired states
	// carry it in the field agents of the previous release verify (wire.DesiredModel
	// LegacySignature).
	Kind string `json:"kind,omitempty"`
}

// SigApproval marks a Signature over artifact.Approval (name, version, manifest, contract,
// profile, dataset version).
const SigApproval = "approval/v1"

// ChunkRef is one chunk of an artifact, in order.
type ChunkRef struct {
	Digest string `json:"digest"`
	Size   int64  `json:"size"`
}

// ModelVersion is one registered version of a model and its artifact.
type ModelVersion struct {
	Model    string `json:"model"`
	Version  int    `json:"version"`
	Digest   string `json:"digest"`
	Size     int64  `json:"size"`
	Format   string `json:"format,omitempty"`
	Filename string `json:"filename,omitempty"`
	// ChunkCount is the number of chunks of the artifact.
	ChunkCount int `json:"chunk_count"`
	// Chunks is filled only in the result of the command that registers the version; the
	// chunk list lives in the manifest.
	Chunks []ChunkRef `json:"chunks,omitempty"`
	// Manifest is filled only in the result of the command that registers the version. It is
	// stored under its own key, not in the version document, so that approvals, tags,
	// deprecations and desired-state publishing of a large model touch a small document;
	// Reader.Manifest reads it.
	Manifest []byte `json:"manifest,omitempty"`
	// ManifestDigest is the sha256 of Manifest, the bytes that approval signs.
	ManifestDigest string             `json:"manifest_digest,omitempty"`
	Metrics        map[string]float64 `json:"metrics,omitempty"`
	Params         map[string]any     `json:"params,omitempty"`
	CodeRef        string             `json:"code_ref,omitempty"`
	TrainedOn      []VersionRef       `json:"trained_on"`
	Status         string             `json:"status"`
	Approvals      []Approval         `json:"approvals"`
	Signatures     []Signature        `json:"signatures,omitempty"`
	Tags           map[string]string  `json:"tags,omitempty"`
	CreatedBy      string             `json:"created_by"`
	// CreatedByToken is the id of the token that registered the version (names are not unique;
	// four-eyes compares ids). Empty for versions registered before it was recorded.
	CreatedByToken string `json:"created_by_token,omitempty"`
	CreatedAt      int64  `json:"created_at"`
	// Output describes the version's output reference, when one was attached.
	Output *OutputSummary `json:"output,omitempty"`
}

// ReportedModel is what a device says about one model.
type ReportedModel struct {
	Active   *int `json:"active"`
	Previous *int `json:"previous,omitempty"`
	// Target is the version the device is moving to (during a pull or activation).
	Target    int    `json:"target,omitempty"`
	State     string `json:"state,omitempty"`
	LastError string `json:"last_error,omitempty"`
}

// Reported is a device's reported state.
type Reported struct {
	Rev int64 `json:"rev"`
	// TS is when the agent sent this reported state (its message's header, ms since the epoch;
	// 0 from a hub before it was recorded). An older one never replaces a newer one: with an
	// external broker consecutive reports of one device can reach different nodes and commit
	// in either order.
	TS           int64                    `json:"ts,omitempty"`
	AgentVersion string                   `json:"agent_version,omitempty"`
	Models       map[string]ReportedModel `json:"models"`
	// DesiredStale: the agent heard no valid desired state since the last one expired.
	DesiredStale bool `json:"desired_stale,omitempty"`
	// RootExpired: the agent's root of trust expired; it refuses desired states until a
	// renewed root reaches it (driftline key rotate issues one).
	RootExpired bool `json:"root_expired,omitempty"`
}

// DesiredModel is what a device should run for one model.
type DesiredModel struct {
	Version   int    `json:"version"`
	RolloutID string `json:"rollout_id,omitempty"`
	SetAt     int64  `json:"set_at"`
}

// HealthSummary is the latest validation and drift summary a device reported for one model.
type HealthSummary struct {
	Model        string  `json:"model,omitempty"`
	Version      int     `json:"version,omitempty"`
	Rows         int64   `json:"rows"`
	Invalid      int64   `json:"invalid"`
	DatasetDrift bool    `json:"dataset_drift"`
	DriftShare   float64 `json:"drift_share"`
	At           int64   `json:"at"`
}

// Device is one edge host of the fleet.
type Device struct {
	ID         string                  `json:"id"`
	Labels     map[string]string       `json:"labels"`
	TokenHash  string                  `json:"-"`
	FirstSeen  int64                   `json:"first_seen,omitempty"`
	LastSeen   int64                   `json:"last_seen,omitempty"`
	Online     bool                    `json:"online"`
	CreatedAt  int64                   `json:"created_at"`
	Desired    map[string]DesiredModel `json:"desired"`
	DesiredRev int64                   `json:"desired_rev"`
	Reported   Reported                `json:"reported"`
	Health     *HealthSummary          `json:"health,omitempty"`
	// Outputs is the latest prediction drift and performance of the running version.
	Outputs *OutputHealth `json:"outputs,omitempty"`
}

// Token roles.
const (
	RoleAdmin     = "admin"
	RolePublisher = "publisher"
	RoleApprover  = "approver"
	RoleViewer    = "viewer"
	RoleDevice    = "device"
	// RoleJoin is a join token's: it admits POST /api/v1/cluster/join only, and it expires.
	RoleJoin = "join"
)

// ValidRole reports whether r is one of the token roles.
func ValidRole(r string) bool {
	switch r {
	case RoleAdmin, RolePublisher, RoleApprover, RoleViewer, RoleDevice, RoleJoin:
		return true
	}
	return false
}

// Token is an API token; only its hash is stored.
type Token struct {
	ID        string `json:"id"`
	Name      string `json:"name"`
	Role      string `json:"role"`
	Hash      string `json:"-"`
	CreatedBy string `json:"created_by,omitempty"`
	CreatedAt int64  `json:"created_at"`
	// ExpiresAt is when the token stops working (Unix ms); 0 never (join tokens expire).
	ExpiresAt int64 `json:"expires_at,omitempty"`
}

// SigningKey is a public key the hub signs manifests with.
type SigningKey struct {
	KeyID     string `json:"key_id"`
	PublicKey string `json:"public_key"`
	AddedAt   int64  `json:"added_at"`
}

// AuditEntry is one entry of the hash-chained audit log. Hash is sha256 over PrevHash and the
// entry's other fields (see audit.go); PrevHash is the Hash of the entry before it.
type AuditEntry struct {
	Seq      uint64 `json:"seq"`
	Index    uint64 `json:"raft_index"`
	Time     int64  `json:"ts"`
	Actor    string `json:"actor"`
	Action   string `json:"action"`
	Object   string `json:"object"`
	Detail   string `json:"detail,omitempty"`
	PrevHash string `json:"prev_hash"`
	Hash     string `json:"hash"`
}

// LineageNode is one node of the lineage graph, named KIND:NAME[@VERSION].
type LineageNode struct {
	ID   string         `json:"id"`
	Kind string         `json:"kind"`
	Attr map[string]any `json:"attr,omitempty"`
}

// LineageEdge is one directed edge of the lineage graph.
type LineageEdge struct {
	From  string         `json:"from"`
	To    string         `json:"to"`
	Kind  string         `json:"kind"`
	Since int64          `json:"since,omitempty"`
	Until int64          `json:"until,omitempty"`
	Attr  map[string]any `json:"attr,omitempty"`
}

// Kinds of objects agents fetch by digest besides chunks.
const (
	ObjectManifest = "manifest"
	ObjectContract = "contract"
	ObjectProfile  = "profile"
	// ObjectOutput is a model version's output reference (shared/outputs.Reference JSON).
	ObjectOutput = "output"
)

// ObjectRef says which registry object a digest names.
type ObjectRef struct {
	Kind    string `json:"kind"`
	Name    string `json:"name"`
	Version int    `json:"version"`
}
