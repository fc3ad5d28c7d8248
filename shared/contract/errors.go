package contract

import (
	"errors"
	"fmt"
	"strings"
)

// Sentinel errors of the package. Callers test them with errors.Is.
var (
	// ErrInvalidContract is wrapped by every *ContractError: the contract document was refused.
	ErrInvalidContract = errors.New("invalid data contract")
)

// Problem is one reason a contract was refused. Path is a JSON path into the contract document,
// such as "fields[2].constraints.pattern" or "x-driftline.window.rows"; it is empty for a problem
// with the document as a whole.
type Problem struct {
	Path    string `json:"path"`
	Message string `json:"message"`
}

// String renders the problem as "path: message".
func (p Problem) String() string {
	if p.Path == "" {
		return p.Message
	}
	return p.Path + ": " + p.Message
}

// ContractError lists every problem found in a refused contract, in document order. It unwraps
// to ErrInvalidContract.
type ContractError struct {
	Problems []Problem
}

// Error joins all problems into one line.
func (e *ContractError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %d problem", ErrInvalidContract, len(e.Problems))
	if len(e.Problems) != 1 {
		b.WriteByte('s')
	}
	for i, p := range e.Problems {
		if i == 0 {
			b.WriteString(": ")
		} else {
			b.WriteString("; ")
		}
		b.WriteString(p.String())
	}
	return b.String()
}

// Unwrap returns ErrInvalidContract.
func (e *ContractError) Unwrap() error { return ErrInvalidContract }
