package api

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"os"
	"strconv"

	"github.com/labstack/echo/v4"

	"github.com/driftline/driftline/hub/command"
	"github.com/driftline/driftline/hub/state"
	"github.com/driftline/driftline/shared/artifact"
)

// CreateRequest is the body of POST /api/v1/datasets and POST /api/v1/models.
type CreateRequest struct {
	Name        string `json:"name"`
	Description string `json:"description,omitempty"`
}

func (s *Server) datasetCreate(c echo.Context) error {
	return s.createNamed(c, func(r CreateRequest) (command.Type, any) {
		return command.TypeDatasetCreate, state.DatasetCreate{Name: r.Name, Description: r.Description}
	})
}

func (s *Server) datasetList(c echo.Context) error { return listPage(c, s.read.Datasets) }

func (s *Server) datasetGet(c echo.Context) error { return getOne(c, s.read.Dataset) }

// createNamed answers POST /api/v1/datasets and /models: it checks the name and proposes the
// create command build makes of the request.
func (s *Server) createNamed(c echo.Context, build func(CreateRequest) (command.Type, any)) error {
	var req CreateRequest
	if err := s.decodeJSON(c, &req); err != nil {
		return err
	}
	if !state.ValidName(req.Name) {
		return badRequest("name", "name %q: use 1-128 letters, digits, '.', '_' or '-'", req.Name)
	}
	t, body := build(req)
	res, err := s.apply(c, t, body)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusCreated, res)
}

// listPage answers a list read with limit and cursor.
func listPage[T any](c echo.Context, list func(cursor string, limit int) (state.Page[T], error)) error {
	cursor, limit, err := pageParams(c)
	if err != nil {
		return err
	}
	p, err := list(cursor, limit)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, p)
}

// getOne answers a read of the object named by the :name path parameter.
func getOne[T any](c echo.Context, get func(name string) (T, error)) error {
	v, err := get(c.Param("name"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, v)
}

func (s *Server) datasetVersionList(c echo.Context) error {
	if _, err := s.read.Dataset(c.Param("name")); err != nil {
		return err
	}
	cursor, limit, err := pageParams(c)
	if err != nil {
		return err
	}
	p, err := s.read.DatasetVersions(c.Param("name"), cursor, limit)
	if err != nil {
		return err
	}
	for i := range p.Items {
		p.Items[i].Profile = nil // large; served by .../profile
	}
	return c.JSON(http.StatusOK, p)
}

func (s *Server) datasetVersion(c echo.Context) (state.DatasetVersion, error) {
	v, err := versionParam(c)
	if err != nil {
		return state.DatasetVersion{}, err
	}
	return s.read.DatasetVersion(c.Param("name"), v)
}

func (s *Server) datasetVersionGet(c echo.Context) error {
	dv, err := s.datasetVersion(c)
	if err != nil {
		return err
	}
	dv.Profile = nil
	return c.JSON(http.StatusOK, dv)
}

func (s *Server) datasetVersionContract(c echo.Context) error {
	dv, err := s.datasetVersion(c)
	if err != nil {
		return err
	}
	return c.Blob(http.StatusOK, "application/json", dv.Contract)
}

// datasetVersionProfile serves the reference profile: its binary form by default, or the JSON
// summary the profile package renders when the client asks for application/json.
func (s *Server) datasetVersionProfile(c echo.Context) error {
	dv, err := s.datasetVersion(c)
	if err != nil {
		return err
	}
	if len(dv.Profile) == 0 {
		return &Error{P: Problem{Type: ProblemNotFound, Title: "not found", Status: 404,
			Detail: fmt.Sprintf("dataset:%s@%d has no reference profile", dv.Dataset, dv.Version)}}
	}
	if s.cfg.ProfileJSON != nil && c.Request().Header.Get("Accept") == "application/json" {
		js, err := s.cfg.ProfileJSON(dv.Profile)
		if err != nil {
			return err
		}
		return c.JSONBlob(http.StatusOK, js)
	}
	c.Response().Header().Set("Digest", "sha-256="+dv.ProfileDigest)
	return c.Blob(http.StatusOK, "application/octet-stream", dv.Profile)
}

// SampleResult is what a SampleProcessor learned from a training sample.
type SampleResult struct {
	Rows          int64
	InvalidRows   int64
	Profile       []byte
	ProfileDigest string
	// ContractDigest is the digest of the parsed contract's canonical form.
	ContractDigest string
	Notes          []string
	// Warnings say what the publisher should look at (a low valid share); they are in Notes
	// too, so they stay with the version, and the push's answer lists them under "warnings".
	Warnings []string
}

// SampleProcessor validates a training sample against its contract and computes the reference
// profile, streaming. format is "csv" or "jsonl". An error wrapping ErrBadInput is the client's
// fault (400).
type SampleProcessor func(contract []byte, sample io.Reader, format string) (SampleResult, error)

// ErrBadInput marks a SampleProcessor error caused by the uploaded contract or sample (400,
// ProblemInvalid).
var ErrBadInput = errors.New("bad input")

// ErrBadSample marks a SampleProcessor error for a sample that cannot give a reference
// profile: no rows, no valid row, too few valid rows to calibrate (400, ProblemInvalidSample).
var ErrBadSample = errors.New("bad sample")

func (s *Server) datasetVersionCreate(c echo.Context) error {
	name := c.Param("name")
	if _, err := s.read.Dataset(name); err != nil {
		return err
	}
	mr, err := s.multipart(c)
	if err != nil {
		return err
	}
	u := &datasetUpload{s: s, req: state.DatasetVersionCreate{Dataset: name}}
	defer u.close()
	if err := eachPart(mr, u.part); err != nil {
		return err
	}
	req, err := u.command()
	if err != nil {
		return err
	}
	out, err := s.apply(c, command.TypeDatasetVersionCreate, req)
	if err != nil {
		return err
	}
	if dv, ok := out.(state.DatasetVersion); ok {
		dv.Profile = nil
		out = createdVersion{DatasetVersion: dv, Warnings: u.res.Warnings}
	}
	return c.JSON(http.StatusCreated, out)
}

// datasetUpload collects the parts of a dataset version push (contract, sample, source_uri,
// parents). The contract and the sample may come in either order: a sample sent before its
// contract waits in a spool file until the contract arrives.
type datasetUpload struct {
	s         *Server
	contract  []byte
	sampleTmp *os.File
	format    string
	req       state.DatasetVersionCreate
	res       SampleResult
	sampled   bool
}

// close removes the spool file, if any.
func (u *datasetUpload) close() {
	if u.sampleTmp != nil {
		u.sampleTmp.Close()
		os.Remove(u.sampleTmp.Name())
	}
}

// process runs the sample processor over r under the contract and records the sample's digest
// and size.
func (u *datasetUpload) process(r io.Reader) error {
	h := sha256.New()
	cr := &countingReader{r: io.TeeReader(r, h)}
	out, err := u.s.processSample(u.contract, cr, u.format)
	if err != nil {
		return err
	}
	// Drain what the processor did not read so the hash covers the whole sample.
	if _, err := io.Copy(io.Discard, cr); err != nil {
		return uploadErr(err)
	}
	u.req.SampleSHA256 = "sha256:" + hex.EncodeToString(h.Sum(nil))
	u.req.SampleBytes = cr.n
	u.res, u.sampled = out, true
	return nil
}

// part reads one part of the upload.
func (u *datasetUpload) part(part *multipart.Part) error {
	switch part.FormName() {
	case "contract":
		return u.contractPart(part)
	case "sample":
		return u.samplePart(part)
	case "source_uri":
		b, err := readPart(part, 4096, "source_uri")
		if err != nil {
			return err
		}
		u.req.SourceURI = string(b)
	case "parents":
		b, err := readPart(part, 64<<10, "parents")
		if err != nil {
			return err
		}
		if err := decodeStrict(b, &u.req.Parents); err != nil {
			return badRequest("parents", "parents must be a JSON list of {\"dataset\", \"version\"}: %v", err)
		}
	default:
		return badRequest(part.FormName(), "unknown part %q: send contract, sample, source_uri, parents", part.FormName())
	}
	return nil
}

// contractPart reads the contract and processes a sample that came before it.
func (u *datasetUpload) contractPart(part *multipart.Part) (err error) {
	u.contract, err = readPart(part, u.s.cfg.MaxBodyBytes, "contract")
	if err != nil {
		return err
	}
	if u.contract, err = storedJSON(u.contract); err != nil {
		return badRequest("contract", "the contract is not JSON: %v", err)
	}
	if u.sampleTmp != nil { // the sample came first: it waited on disk
		if _, err := u.sampleTmp.Seek(0, io.SeekStart); err != nil {
			return err
		}
		return u.process(u.sampleTmp)
	}
	return nil
}

// samplePart processes the sample, or spools it until the contract comes.
func (u *datasetUpload) samplePart(part *multipart.Part) (err error) {
	if u.sampled || u.sampleTmp != nil {
		return badRequest("sample", "more than one sample part")
	}
	u.format = sampleFormat(part)
	if u.contract != nil {
		return u.process(part)
	}
	if u.sampleTmp, err = os.CreateTemp(u.s.cfg.SpoolDir, "driftline-sample-*"); err != nil {
		return err
	}
	if _, err := io.Copy(u.sampleTmp, part); err != nil {
		return uploadErr(err)
	}
	return nil
}

// command is the dataset version command of a complete upload; a 400 problem when the contract
// or the sample is missing.
func (u *datasetUpload) command() (state.DatasetVersionCreate, error) {
	if u.contract == nil {
		return u.req, badRequest("contract", "the contract part is required")
	}
	if !u.sampled {
		return u.req, badRequest("sample", "the sample part is required")
	}
	req := u.req
	req.Contract = json.RawMessage(u.contract)
	// The digest names the stored bytes exactly: agents fetch the contract by it and check it.
	req.ContractHash = artifact.DigestOf(u.contract)
	req.Profile = u.res.Profile
	if len(u.res.Profile) > 0 {
		req.ProfileDigest = artifact.DigestOf(u.res.Profile)
	}
	req.SampleRows, req.InvalidRows, req.Notes = u.res.Rows, u.res.InvalidRows, u.res.Notes
	return req, nil
}

// createdVersion is the answer to a dataset push: the version and the build's warnings.
type createdVersion struct {
	state.DatasetVersion
	Warnings []string `json:"warnings,omitempty"`
}

// processSample runs the configured SampleProcessor, or, without one, only checks that the
// contract is a JSON object and counts the sample's lines.
func (s *Server) processSample(contract []byte, r io.Reader, format string) (SampleResult, error) {
	if s.cfg.Samples != nil {
		res, err := s.cfg.Samples(contract, r, format)
		if errors.Is(err, ErrBadSample) {
			e := problem(http.StatusBadRequest, ProblemInvalidSample, "invalid sample", err.Error())
			e.P.Field = "sample"
			return res, e
		}
		if errors.Is(err, ErrBadInput) {
			return res, badRequest("", "%v", err)
		}
		if err != nil {
			return res, uploadErr(err)
		}
		return res, nil
	}
	var obj map[string]any
	if err := json.Unmarshal(contract, &obj); err != nil {
		return SampleResult{}, badRequest("contract", "contract is not a JSON object: %v", err)
	}
	sum := sha256.Sum256(contract)
	return SampleResult{ContractDigest: "sha256:" + hex.EncodeToString(sum[:]),
		Notes: []string{"reference profile not computed: this hub was built without the profile package"}}, nil
}

func sampleFormat(p *multipart.Part) string {
	ct := p.Header.Get("Content-Type")
	switch {
	case ct == "application/x-ndjson" || ct == "application/jsonl" || ct == "application/json":
		return "jsonl"
	case len(p.FileName()) > 6 && p.FileName()[len(p.FileName())-6:] == ".jsonl":
		return "jsonl"
	case len(p.FileName()) > 5 && p.FileName()[len(p.FileName())-5:] == ".json":
		return "jsonl"
	}
	return "csv"
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// multipart returns a streaming reader of the request's multipart body, bounded by the upload
// limit. No form accessor is touched before it (see PITFALLS: they parse the whole body).
func (s *Server) multipart(c echo.Context) (*multipart.Reader, error) {
	c.Request().Body = http.MaxBytesReader(c.Response(), c.Request().Body, s.cfg.MaxUploadBytes)
	mr, err := c.Request().MultipartReader()
	if err != nil {
		return nil, problem(http.StatusUnsupportedMediaType, ProblemUnsupported, "unsupported media type",
			"send multipart/form-data: "+err.Error())
	}
	return mr, nil
}

// eachPart calls fn with every part of a multipart body, in order, to the body's end. A body
// that cannot be read ends it with uploadErr's error (413 at the upload limit); an error from fn
// ends it as is.
func eachPart(mr *multipart.Reader, fn func(*multipart.Part) error) error {
	for {
		part, err := mr.NextPart()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return uploadErr(err)
		}
		if err := fn(part); err != nil {
			return err
		}
	}
}

// uploadErr turns a body read error into 413 when the upload limit was hit.
func uploadErr(err error) error {
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return problem(http.StatusRequestEntityTooLarge, ProblemTooLarge, "payload too large",
			"uploads are limited to "+strconv.FormatInt(mbe.Limit, 10)+" bytes")
	}
	var ae *Error
	if errors.As(err, &ae) {
		return err
	}
	return badRequest("", "read upload: %v", err)
}

func readPart(p *multipart.Part, limit int64, field string) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(p, limit+1))
	if err != nil {
		return nil, uploadErr(err)
	}
	if int64(len(b)) > limit {
		return nil, badRequest(field, "part %q is larger than %d bytes", field, limit)
	}
	return b, nil
}

// storedJSON returns b in the form the state machine stores and serves it (encoding/json's
// compact form of a RawMessage, HTML characters escaped), so that the digest agents receive
// names exactly the bytes they will fetch.
func storedJSON(b []byte) ([]byte, error) {
	if !json.Valid(b) {
		return nil, errors.New("malformed JSON")
	}
	return json.Marshal(json.RawMessage(b))
}
