package layout

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// testhelpAPI is what internal/testhelp exports (issue 17): waiting for a condition and a logger
// on t.Log (LogWriter is its writer, for a logger that also writes elsewhere). A port for a child
// process is internal/freeport; a child process and its output are internal/hubproc.
var testhelpAPI = []string{"LogWriter", "Logger", "WaitFor"}

// TestTesthelpSmall: internal/testhelp exports only testhelpAPI, so the helpers every test
// shares stay two and the others live beside what they serve.
func TestTesthelpSmall(t *testing.T) {
	files, err := filepath.Glob("../testhelp/*.go")
	if err != nil || len(files) == 0 {
		t.Fatalf("no internal/testhelp sources: %v", err)
	}
	var got []string
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(token.NewFileSet(), name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range f.Decls {
			switch d := d.(type) {
			case *ast.FuncDecl:
				if d.Recv == nil && d.Name.IsExported() {
					got = append(got, d.Name.Name)
				}
			case *ast.GenDecl:
				for _, s := range d.Specs {
					switch s := s.(type) {
					case *ast.TypeSpec:
						if s.Name.IsExported() {
							got = append(got, s.Name.Name)
						}
					case *ast.ValueSpec:
						for _, n := range s.Names {
							if n.IsExported() {
								got = append(got, n.Name)
							}
						}
					}
				}
			}
		}
	}
	sort.Strings(got)
	if strings.Join(got, " ") != strings.Join(testhelpAPI, " ") {
		t.Errorf("internal/testhelp exports %v, want only %v: a port goes to internal/freeport, a process or its output to internal/hubproc", got, testhelpAPI)
	}
}
