package api

import (
	"context"
	"errors"
	"fmt"
	"mime/multipart"
	"net/http"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/driftline/driftline/hub/command"
	"github.com/driftline/driftline/hub/state"
	"github.com/driftline/driftline/shared/artifact"
	"github.com/driftline/driftline/shared/zstdx"
)

func (s *Server) modelCreate(c echo.Context) error {
	return s.createNamed(c, func(r CreateRequest) (command.Type, any) {
		return command.TypeModelCreate, state.ModelCreate{Name: r.Name, Description: r.Description}
	})
}

func (s *Server) modelList(c echo.Context) error { return listPage(c, s.read.Models) }

func (s *Server) modelGet(c echo.Context) error { return getOne(c, s.read.Model) }

// VersionMetadata is the `metadata` part of POST /api/v1/models/{name}/versions.
type VersionMetadata struct {
	TrainedOn []state.VersionRef `json:"trained_on"`
	Metrics   map[string]float64 `json:"metrics"`
	Params    map[string]any     `json:"params"`
	CodeRef   string             `json:"code_ref"`
	Format    string             `json:"format"`
	Tags      map[string]string  `json:"tags"`
}

// chunkBatchBytes bounds the compressed bytes of one ChunksPut Raft entry: big payloads stay in
// bounded entries (see PITFALLS: MaxAppendEntries counts entries, not bytes).
const chunkBatchBytes = 1 << 20

// chunkUploader stores an artifact's chunks through Raft in bounded batches, skipping chunks the
// hub already holds, so two versions that share content share chunks.
type chunkUploader struct {
	s      *Server
	c      echo.Context
	batch  []state.Chunk
	bytes  int
	seen   map[string]bool
	Stored int
	Reused int
}

func (u *chunkUploader) add(ch artifact.Chunk) error {
	if u.seen[ch.Digest] {
		u.Reused++
		return nil
	}
	u.seen[ch.Digest] = true
	have, err := u.s.read.HasChunk(ch.Digest)
	if err != nil {
		return err
	}
	if have {
		u.Reused++
		return nil
	}
	z := zstdx.Encode(nil, ch.Data)
	u.batch = append(u.batch, state.Chunk{Digest: ch.Digest, Size: int64(len(ch.Data)), Zstd: z})
	u.bytes += len(z)
	u.Stored++
	if u.bytes >= chunkBatchBytes {
		return u.flush()
	}
	return nil
}

func (u *chunkUploader) flush() error {
	if len(u.batch) == 0 {
		return nil
	}
	_, err := u.s.apply(u.c, command.TypeChunksPut, state.ChunksPut{Chunks: u.batch})
	u.batch, u.bytes = nil, 0
	return err
}

func (s *Server) modelVersionCreate(c echo.Context) error {
	name := c.Param("name")
	if _, err := s.read.Model(name); err != nil {
		return err
	}
	mr, err := s.multipart(c)
	if err != nil {
		return err
	}
	var (
		meta     *VersionMetadata
		man      *artifact.Manifest
		filename string
		up       = &chunkUploader{s: s, c: c, seen: map[string]bool{}}
	)
	err = eachPart(mr, func(part *multipart.Part) (err error) {
		switch part.FormName() {
		case "metadata":
			b, err := readPart(part, s.cfg.MaxBodyBytes, "metadata")
			if err != nil {
				return err
			}
			meta = &VersionMetadata{}
			if err := decodeStrict(b, meta); err != nil {
				return badRequest("metadata", "metadata: %v", err)
			}
			// Checked before the artifact streams in, so a bad reference costs no upload.
			if err := s.checkTrainedOn(meta.TrainedOn); err != nil {
				return err
			}
		case "artifact":
			if man != nil {
				return badRequest("artifact", "more than one artifact part")
			}
			filename = part.FileName()
			m, err := artifact.Split(part, up.add)
			if err != nil {
				return uploadErr(err)
			}
			if err := up.flush(); err != nil {
				return err
			}
			man = &m
		default:
			return badRequest(part.FormName(), "unknown part %q: send metadata and artifact", part.FormName())
		}
		return nil
	})
	if err != nil {
		return err
	}
	if man == nil {
		return badRequest("artifact", "the artifact part is required")
	}
	if meta == nil {
		meta = &VersionMetadata{}
	}
	if err := s.checkTrainedOn(meta.TrainedOn); err != nil {
		return err
	}
	canon, err := man.Canonical()
	if err != nil {
		return err
	}
	refs := make([]state.ChunkRef, len(man.Chunks))
	for i, ch := range man.Chunks {
		refs[i] = state.ChunkRef{Digest: ch.Digest, Size: ch.Size}
	}
	req := state.ModelVersionCreate{
		Model: name, Digest: man.Digest, Size: man.Size, Format: meta.Format, Filename: filename,
		Chunks: refs, Manifest: canon, ManifestDigest: artifact.DigestOf(canon),
		Metrics: meta.Metrics, Params: meta.Params, CodeRef: meta.CodeRef, TrainedOn: meta.TrainedOn, Tags: meta.Tags,
		TokenID: tokenID(c),
	}
	res, err := s.apply(c, command.TypeModelVersionCreate, req)
	if err != nil {
		return err
	}
	if mv, ok := res.(state.ModelVersion); ok {
		v := newVersionView(mv)
		v.ChunksStored, v.ChunksReused = up.Stored, up.Reused
		return c.JSON(http.StatusCreated, v)
	}
	return c.JSON(http.StatusCreated, res)
}

// versionView is a model version as the API shows it: without the chunk list and manifest
// bytes (newVersionView drops them), with the upload's chunk counts when it was just created.
type versionView struct {
	state.ModelVersion
	ChunksStored int `json:"chunks_stored,omitempty"`
	ChunksReused int `json:"chunks_reused,omitempty"`
}

func newVersionView(mv state.ModelVersion) versionView {
	mv.Chunks, mv.Manifest = nil, nil
	return versionView{ModelVersion: mv}
}

func (s *Server) modelVersionList(c echo.Context) error {
	if _, err := s.read.Model(c.Param("name")); err != nil {
		return err
	}
	cursor, limit, err := pageParams(c)
	if err != nil {
		return err
	}
	p, err := s.read.ModelVersions(c.Param("name"), cursor, limit)
	if err != nil {
		return err
	}
	views := make([]versionView, len(p.Items))
	for i, mv := range p.Items {
		views[i] = newVersionView(mv)
	}
	return c.JSON(http.StatusOK, state.Page[versionView]{Items: views, NextCursor: p.NextCursor})
}

func (s *Server) modelVersion(c echo.Context) (state.ModelVersion, error) {
	v, err := versionParam(c)
	if err != nil {
		return state.ModelVersion{}, err
	}
	return s.read.ModelVersion(c.Param("name"), v)
}

func (s *Server) modelVersionGet(c echo.Context) error {
	mv, err := s.modelVersion(c)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, newVersionView(mv))
}

// modelVersionArtifact streams the whole artifact, verifying each chunk as it goes. A chunk
// that fails verification after the response started cuts the connection, so a client never
// gets a silently wrong file (the Digest header lets it check too).
func (s *Server) modelVersionArtifact(c echo.Context) error {
	mv, err := s.modelVersion(c)
	if err != nil {
		return err
	}
	h := c.Response().Header()
	h.Set(echo.HeaderContentType, "application/octet-stream")
	h.Set(echo.HeaderContentLength, strconv.FormatInt(mv.Size, 10))
	h.Set("X-Driftline-Digest", mv.Digest)
	if mv.Filename != "" {
		h.Set(echo.HeaderContentDisposition, fmt.Sprintf("attachment; filename=%q", mv.Filename))
	}
	raw, err := s.read.Manifest(mv.Model, mv.Version)
	if err != nil {
		return err
	}
	man, err := artifact.DecodeManifest(raw)
	if err != nil {
		return err
	}
	c.Response().WriteHeader(http.StatusOK)
	var zbuf []byte
	return artifact.Assemble(c.Response(), man, func(digest string) ([]byte, error) {
		z, err := s.read.Chunk(zbuf[:0], digest)
		if err != nil {
			return nil, err
		}
		zbuf = z
		return zstdx.Decode(nil, z, artifact.MaxChunkSize)
	})
}

// ApproveRequest is the body of POST .../approve and .../deprecate.
type ApproveRequest struct {
	Comment string `json:"comment"`
}

func (s *Server) optionalComment(c echo.Context) (string, error) {
	if c.Request().ContentLength == 0 {
		return "", nil
	}
	var req ApproveRequest
	if err := s.decodeJSON(c, &req); err != nil {
		return "", err
	}
	return req.Comment, nil
}

func (s *Server) modelVersionApprove(c echo.Context) error {
	comment, err := s.optionalComment(c)
	if err != nil {
		return err
	}
	mv, err := s.modelVersion(c)
	if err != nil {
		return err
	}
	cur, err := s.currentKey()
	if err != nil {
		s.metrics.signFailed.WithLabelValues("no_key").Inc()
	}
	if err != nil {
		return err
	}
	subject, err := s.read.ApprovalOf(mv)
	if err != nil {
		return err
	}
	sig := artifact.SignApproval(cur.Key, subject)
	cmd := state.ModelVersionApprove{
		Model: mv.Model, Version: mv.Version, Comment: comment, FourEyes: s.cfg.FourEyes, TokenID: tokenID(c),
		Approval: state.Signature{KeyID: sig.KeyID, Sig: sig.Sig, Kind: state.SigApproval},
	}
	if s.cfg.NodeKey != nil {
		// The legacy signature: what agents of the previous release verify (docs/upgrading.md).
		manifest, err := s.read.Manifest(mv.Model, mv.Version)
		if err != nil {
			return err
		}
		legacy := artifact.Sign(s.cfg.NodeKey, manifest)
		cmd.Signature = state.Signature{KeyID: legacy.KeyID, Sig: legacy.Sig}
	}
	res, err := s.apply(c, command.TypeModelVersionApprove, cmd)
	if err != nil {
		return err
	}
	// Every node must hold the version's chunks before the approval answers.
	ctx, cancel := context.WithTimeout(c.Request().Context(), 30*time.Second)
	lagging := s.waitReplicated(ctx, s.store.AppliedIndex())
	cancel()
	if out, ok := res.(state.ModelVersion); ok {
		return c.JSON(http.StatusOK, approvedView{newVersionView(out), lagging})
	}
	return c.JSON(http.StatusOK, res)
}

// approvedView is the answer to an approval: the version, and the nodes that had not yet
// applied it after 30 s (empty when every node holds the version).
type approvedView struct {
	versionView
	ReplicationPending []string `json:"replication_pending,omitempty"`
}

func (s *Server) modelVersionDeprecate(c echo.Context) error {
	comment, err := s.optionalComment(c)
	if err != nil {
		return err
	}
	v, err := versionParam(c)
	if err != nil {
		return err
	}
	res, err := s.apply(c, command.TypeModelVersionDeprecate, state.ModelVersionDeprecate{Model: c.Param("name"), Version: v, Comment: comment})
	if err != nil {
		return err
	}
	if out, ok := res.(state.ModelVersion); ok {
		return c.JSON(http.StatusOK, newVersionView(out))
	}
	return c.JSON(http.StatusOK, res)
}

// TagsRequest is the body of PUT .../versions/{v}/tags: an empty value deletes a tag.
type TagsRequest struct {
	Tags map[string]string `json:"tags"`
}

func (s *Server) modelVersionTags(c echo.Context) error {
	v, err := versionParam(c)
	if err != nil {
		return err
	}
	var req TagsRequest
	if err := s.decodeJSON(c, &req); err != nil {
		return err
	}
	if _, err := s.apply(c, command.TypeTagSet, state.TagSet{Model: c.Param("name"), Version: v, Tags: req.Tags}); err != nil {
		return err
	}
	// The command returns nothing (tags live under their own keys): answer with the version as
	// this node, the leader, holds it now.
	mv, err := s.read.ModelVersion(c.Param("name"), v)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, newVersionView(mv))
}

// VersionRequest is the body of PUT .../aliases/{alias} and PUT /devices/{id}/models/{name}.
type VersionRequest struct {
	Version *int `json:"version"`
}

func (r VersionRequest) get() (int, error) {
	if r.Version == nil {
		return 0, badRequest("version", "version is required")
	}
	if *r.Version < 0 {
		return 0, badRequest("version", "version must be >= 0 (0 clears)")
	}
	return *r.Version, nil
}

func (s *Server) aliasSet(c echo.Context) error {
	var req VersionRequest
	if err := s.decodeJSON(c, &req); err != nil {
		return err
	}
	v, err := req.get()
	if err != nil {
		return err
	}
	res, err := s.apply(c, command.TypeAliasSet, state.AliasSet{Model: c.Param("name"), Alias: c.Param("alias"), Version: v})
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, res)
}

func (s *Server) aliasGet(c echo.Context) error {
	m, err := s.read.Model(c.Param("name"))
	if err != nil {
		return err
	}
	v, ok := m.Aliases[c.Param("alias")]
	if !ok {
		return &Error{P: Problem{Type: ProblemNotFound, Title: "not found", Status: 404,
			Detail: fmt.Sprintf("model %s has no alias %q", m.Name, c.Param("alias"))}}
	}
	return c.JSON(http.StatusOK, state.AliasResult{Model: m.Name, Alias: c.Param("alias"), Version: v})
}

// checkTrainedOn refuses trained_on entries that do not name an existing dataset version, with
// the entry at fault as the problem's field.
func (s *Server) checkTrainedOn(refs []state.VersionRef) error {
	for i, t := range refs {
		if t.Dataset == "" || t.Version < 1 {
			return badRequest(fmt.Sprintf("trained_on[%d]", i), "trained_on entries need a dataset and a version >= 1")
		}
		if _, err := s.read.DatasetVersion(t.Dataset, t.Version); err != nil {
			if errors.Is(err, state.ErrNotFound) {
				return badRequest(fmt.Sprintf("trained_on[%d]", i), "trained_on: dataset %s@%d does not exist", t.Dataset, t.Version)
			}
			return err
		}
	}
	return nil
}
