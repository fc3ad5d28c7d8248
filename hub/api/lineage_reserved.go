package api

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/driftline/driftline/hub/state"
)

// checkReservedNamespace keeps the `driftline` OpenLineage namespace for the registry's own
// objects, which only the registry creates: an outside event may not run a job in it, may not
// produce a dataset in it (that would forge the provenance of a dataset or model version), and
// may consume from it only a dataset or model version that exists.
func (s *Server) checkReservedNamespace(e RunEvent) error {
	if e.Job.Namespace == OpenLineageNamespace {
		return badRequest("job.namespace", "the %q namespace is reserved for the registry's own jobs", OpenLineageNamespace)
	}
	for i, d := range e.Outputs {
		if d.Namespace == OpenLineageNamespace {
			return badRequest(fmt.Sprintf("outputs[%d].namespace", i), "the %q namespace is reserved: only the registry produces its datasets and models", OpenLineageNamespace)
		}
	}
	for i, d := range e.Inputs {
		if d.Namespace != OpenLineageNamespace {
			continue
		}
		if err := s.registryObjectExists(olNode(d)); err != nil {
			return badRequest(fmt.Sprintf("inputs[%d].name", i), "%s in the %q namespace: %v", d.Name, OpenLineageNamespace, err)
		}
	}
	return nil
}

// registryObjectExists checks that node ("dataset:NAME@V" or "model:NAME@V") is a registered
// version.
func (s *Server) registryObjectExists(node string) error {
	kind, rest, _ := strings.Cut(node, ":")
	at := strings.LastIndexByte(rest, '@')
	if at <= 0 {
		return errors.New("want NAME@VERSION or model:NAME@VERSION")
	}
	v, err := strconv.Atoi(rest[at+1:])
	if err != nil || v < 1 {
		return errors.New("want NAME@VERSION or model:NAME@VERSION")
	}
	name := rest[:at]
	switch kind {
	case state.KindDataset:
		_, err = s.read.DatasetVersion(name, v)
	case state.KindModel:
		_, err = s.read.ModelVersion(name, v)
	default:
		return fmt.Errorf("only dataset and model versions live there, not %q", kind)
	}
	if errors.Is(err, state.ErrNotFound) {
		return errors.New("no such version in the registry")
	}
	return err
}
