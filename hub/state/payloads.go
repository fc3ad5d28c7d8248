package state

import "encoding/json"

// Command payloads. Each is the JSON body of a command.Envelope of the matching type; ids,
// hashes, signatures and times are computed by the proposer, never inside Apply.

// TokenCreate creates an API token. Payload of command.TypeTokenCreate.
type TokenCreate struct {
	ID   string `json:"id"`
	Name string `json:"name"`
	Role string `json:"role"`
	Hash string `json:"hash"`
	// ExpiresAt is when the token stops working (Unix ms); 0 never. A join token needs one.
	ExpiresAt int64 `json:"expires_at,omitempty"`
}

// TokenDelete revokes a token. Payload of command.TypeTokenDelete.
type TokenDelete struct {
	ID string `json:"id"`
}

// DatasetCreate creates a dataset. Payload of command.TypeDatasetCreate.
type DatasetCreate struct {
	Name        string `json:"name"`
	Description string `json:"description,omitempty"`
}

// DatasetVersionCreate adds the next version of a dataset. Payload of
// command.TypeDatasetVersionCreate.
type DatasetVersionCreate struct {
	Dataset       string          `json:"dataset"`
	Contract      json.RawMessage `json:"contract"`
	ContractHash  string          `json:"contract_digest"`
	Profile       []byte          `json:"profile,omitempty"`
	ProfileDigest string          `json:"profile_digest,omitempty"`
	SampleSHA256  string          `json:"sample_sha256"`
	SampleBytes   int64           `json:"sample_bytes"`
	SampleRows    int64           `json:"sample_rows"`
	InvalidRows   int64           `json:"invalid_rows"`
	SourceURI     string          `json:"source_uri,omitempty"`
	Parents       []VersionRef    `json:"parents,omitempty"`
	Notes         []string        `json:"notes,omitempty"`
}

// ModelCreate creates a model. Payload of command.TypeModelCreate.
type ModelCreate struct {
	Name        string `json:"name"`
	Description string `json:"description,omitempty"`
}

// Chunk is one zstd-compressed artifact chunk keyed by the sha256 of its plain bytes.
type Chunk struct {
	Digest string `json:"digest"`
	Size   int64  `json:"size"`
	Zstd   []byte `json:"zstd"`
}

// ChunksPut stores artifact chunks (already present ones are skipped). Payload of
// command.TypeChunksPut.
type ChunksPut struct {
	Chunks []Chunk `json:"chunks"`
}

// ChunksSweep deletes every chunk stored before Before (Unix ms) that no model version has
// listed since: what aborted uploads left. The leader proposes it periodically with Before a
// grace period in the past, so uploads in progress keep their chunks. Payload of
// command.TypeChunksSweep.
type ChunksSweep struct {
	Before int64 `json:"before"`
}

// ChunksOrphanMark marks the chunks no model version lists and no pending mark covers (left by
// aborted uploads of builds that did not mark them) as pending, with the command's time, so
// that ChunksSweep deletes them after its grace period. Payload of
// command.TypeChunksOrphanMark.
type ChunksOrphanMark struct{}

// ModelVersionCreate registers the next version of a model; every chunk must already be stored.
// Payload of command.TypeModelVersionCreate.
type ModelVersionCreate struct {
	Model          string             `json:"model"`
	Digest         string             `json:"digest"`
	Size           int64              `json:"size"`
	Format         string             `json:"format,omitempty"`
	Filename       string             `json:"filename,omitempty"`
	Chunks         []ChunkRef         `json:"chunks"`
	Manifest       []byte             `json:"manifest"`
	ManifestDigest string             `json:"manifest_digest"`
	Metrics        map[string]float64 `json:"metrics,omitempty"`
	Params         map[string]any     `json:"params,omitempty"`
	CodeRef        string             `json:"code_ref,omitempty"`
	TrainedOn      []VersionRef       `json:"trained_on,omitempty"`
	Tags           map[string]string  `json:"tags,omitempty"`
	// TokenID is the id of the registering token (four-eyes compares ids).
	TokenID string `json:"token_id,omitempty"`
}

// ModelVersionApprove approves a version with the leader's signatures. Payload of
// command.TypeModelVersionApprove.
//
// Signature keeps the previous release's meaning (the leader's node-key signature over the
// manifest bytes, Kind empty), so a node of the previous release applying this command during
// a rolling upgrade stores what its own agents verify; Approval is the approval signature by
// the current online key (Kind SigApproval), which older nodes ignore. A command from an older
// leader carries only Signature. At least one must be set.
type ModelVersionApprove struct {
	Model     string    `json:"model"`
	Version   int       `json:"version"`
	Comment   string    `json:"comment,omitempty"`
	Signature Signature `json:"signature"`
	Approval  Signature `json:"approval,omitzero"`
	FourEyes  bool      `json:"four_eyes"`
	// TokenID is the id of the approving token: under four-eyes it must differ from the
	// registering token's (names are not unique, ids are).
	TokenID string `json:"token_id,omitempty"`
}

// ModelVersionDeprecate deprecates a version. Payload of command.TypeModelVersionDeprecate.
type ModelVersionDeprecate struct {
	Model   string `json:"model"`
	Version int    `json:"version"`
	Comment string `json:"comment,omitempty"`
}

// AliasSet points an alias at a version (Version 0 deletes it). Payload of command.TypeAliasSet.
type AliasSet struct {
	Model   string `json:"model"`
	Alias   string `json:"alias"`
	Version int    `json:"version"`
}

// TagSet sets (or with an empty value deletes) tags on a model version. Payload of
// command.TypeTagSet.
type TagSet struct {
	Model   string            `json:"model"`
	Version int               `json:"version"`
	Tags    map[string]string `json:"tags"`
}

// TagSetResult is the result of command.TypeTagSet: which version's tags changed. It is small
// on purpose (a tag write does not read the version document); Reader.ModelVersion has the tags.
type TagSetResult struct {
	Model   string `json:"model"`
	Version int    `json:"version"`
}

// DeviceCreate enrolls a device. Payload of command.TypeDeviceCreate.
type DeviceCreate struct {
	ID        string            `json:"id"`
	Labels    map[string]string `json:"labels,omitempty"`
	TokenHash string            `json:"token_hash"`
}

// DevicePatch merges labels into a device; a nil value removes the label. Payload of
// command.TypeDevicePatch.
type DevicePatch struct {
	ID     string             `json:"id"`
	Labels map[string]*string `json:"labels"`
}

// DeviceDelete removes a device and revokes its token. Payload of command.TypeDeviceDelete.
type DeviceDelete struct {
	ID string `json:"id"`
}

// DeviceRekey replaces a device's token with the one whose hash is TokenHash; the old token stops
// working in the same entry. Everything else of the device stays, its desired revision included,
// so its agent goes on accepting the desired states that follow. Payload of
// command.TypeDeviceRekey.
type DeviceRekey struct {
	ID        string `json:"id"`
	TokenHash string `json:"token_hash"`
}

// DeviceDesiredSet sets what one device should run for one model (Version 0 clears it). Payload
// of command.TypeDeviceDesiredSet.
type DeviceDesiredSet struct {
	ID        string `json:"id"`
	Model     string `json:"model"`
	Version   int    `json:"version"`
	RolloutID string `json:"rollout_id,omitempty"`
}

// DeviceObservation is one device's news gathered from MQTT during a batching interval.
type DeviceObservation struct {
	ID       string         `json:"id"`
	Online   *bool          `json:"online,omitempty"`
	LastSeen int64          `json:"last_seen,omitempty"`
	Reported *Reported      `json:"reported,omitempty"`
	Health   *HealthSummary `json:"health,omitempty"`
	// Outputs are the output reports since the last command (counts are deltas).
	Outputs *OutputHealth `json:"outputs,omitempty"`
	// Reports are the numbered reports (wire.ReportSeq) of the interval, one each, in the order
	// the node received them. Apply counts each one once per epoch and sequence number, however
	// often it arrives and through whichever node, and advances the device's ReportCursor.
	Reports []NumberedReport `json:"reports,omitempty"`
}

// NumberedReport is one report an agent numbered for the hub's acknowledgement: a validation or
// drift report's contribution to the device's health summary, or (Outputs set) a prediction
// drift or performance report's counts for the device's output health.
type NumberedReport struct {
	Epoch  uint64        `json:"epoch"`
	Seq    uint64        `json:"seq"`
	First  uint64        `json:"first"`
	Health HealthSummary `json:"health"`
	// Outputs, when set, is the report's output news (counts are this report's alone); Health
	// is then zero and not applied.
	Outputs *OutputHealth `json:"outputs,omitempty"`
}

// DeviceTelemetry is a batch of device observations: one command per interval, never one per
// MQTT message. Payload of command.TypeDeviceTelemetry.
type DeviceTelemetry struct {
	Devices []DeviceObservation `json:"devices"`
}

// OpenLineageEvent is an accepted OpenLineage RunEvent reduced to what the graph keeps. Payload
// of command.TypeOpenLineage.
type OpenLineageEvent struct {
	RunID     string   `json:"run_id"`
	EventType string   `json:"event_type"`
	EventTime string   `json:"event_time"`
	Job       string   `json:"job"` // NAMESPACE/NAME
	Inputs    []string `json:"inputs"`
	Outputs   []string `json:"outputs"`
	Producer  string   `json:"producer"`
}

// SigningKeyAdd records a public signing key. Payload of command.TypeSigningKeyAdd.
type SigningKeyAdd struct {
	KeyID     string `json:"key_id"`
	PublicKey string `json:"public_key"`
}
