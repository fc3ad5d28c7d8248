package layout

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// maxFuncLines is the limit on a function outside tests: a longer one is split into named steps.
const maxFuncLines = 100

// longFuncsAllowed are the functions over the limit that wait for their split, as
// "path/to/file.go:Func" (a method as "Type.Method"). Remove an entry with its split; the test
// fails on a stale one.
var longFuncsAllowed = map[string]bool{}

// TestFunctionLength: no non-test function (closures counted in the function they are in) is
// maxFuncLines lines or longer, the lines from "func" to its closing brace.
func TestFunctionLength(t *testing.T) {
	long := longFuncs(t, "../..")
	for _, f := range long {
		if !longFuncsAllowed[f.name] {
			t.Errorf("%s is %d lines (must be under %d): split it into named steps", f.name, f.lines, maxFuncLines)
		}
	}
	found := map[string]bool{}
	for _, f := range long {
		found[f.name] = true
	}
	for name := range longFuncsAllowed {
		if !found[name] {
			t.Errorf("%s is allowed to be long but is not (or is gone): remove it from longFuncsAllowed", name)
		}
	}
}

type longFunc struct {
	name  string
	lines int
}

// longFuncs parses every non-test Go file under root (skipping testdata, vendor and hidden
// directories) and returns its functions of maxFuncLines lines or more, longest first.
func longFuncs(t *testing.T, root string) []longFunc {
	t.Helper()
	var out []longFunc
	fset := token.NewFileSet()
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if n := d.Name(); path != root && (n == "testdata" || n == "vendor" || strings.HasPrefix(n, ".")) {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		for _, decl := range f.Decls {
			fn, ok := decl.(*ast.FuncDecl)
			if !ok || fn.Body == nil {
				continue
			}
			n := fset.Position(fn.End()).Line - fset.Position(fn.Pos()).Line + 1
			if n >= maxFuncLines {
				out = append(out, longFunc{name: filepath.ToSlash(rel) + ":" + funcName(fn), lines: n})
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].lines > out[j].lines })
	return out
}

// funcName is "Func" or "Type.Method".
func funcName(fn *ast.FuncDecl) string {
	if fn.Recv == nil || len(fn.Recv.List) == 0 {
		return fn.Name.Name
	}
	typ := fn.Recv.List[0].Type
	if s, ok := typ.(*ast.StarExpr); ok {
		typ = s.X
	}
	if ix, ok := typ.(*ast.IndexExpr); ok {
		typ = ix.X
	}
	if id, ok := typ.(*ast.Ident); ok {
		return fmt.Sprintf("%s.%s", id.Name, fn.Name.Name)
	}
	return fn.Name.Name
}
