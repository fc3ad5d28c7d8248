package api_test

import (
	"github.com/labstack/echo/v4"

	"github.com/driftline/driftline/hub/fleetdrift"

	"fmt"
	"os"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/driftline/driftline/hub/api"
	"github.com/driftline/driftline/hub/state"
)

const openAPIFile = "../../docs/openapi.yaml"

// httpMethods are the operation keys of an OpenAPI path item.
var httpMethods = []string{"get", "put", "post", "delete", "patch", "head", "options", "trace"}

// loadOpenAPI parses docs/openapi.yaml into generic maps.
func loadOpenAPI(t *testing.T) map[string]any {
	t.Helper()
	b, err := os.ReadFile(openAPIFile)
	if err != nil {
		t.Fatalf("read %s: %v", openAPIFile, err)
	}
	var doc map[string]any
	if err := yaml.Unmarshal(b, &doc); err != nil {
		t.Fatalf("parse %s: %v", openAPIFile, err)
	}
	return doc
}

// operation is one path+method of the document.
type operation struct {
	key  string // "GET /api/v1/datasets/{name}"
	path string
	op   map[string]any
	item map[string]any
}

func operations(t *testing.T, doc map[string]any) []operation {
	t.Helper()
	paths, ok := doc["paths"].(map[string]any)
	if !ok {
		t.Fatal("openapi.yaml has no paths object")
	}
	var out []operation
	for p, v := range paths {
		item, ok := v.(map[string]any)
		if !ok {
			t.Fatalf("path %s is not an object", p)
		}
		for _, m := range httpMethods {
			if op, ok := item[m].(map[string]any); ok {
				out = append(out, operation{key: strings.ToUpper(m) + " " + p, path: p, op: op, item: item})
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].key < out[j].key })
	return out
}

// fullAPI is the API with the extra routes hub/node mounts (fleet drift), as a node serves it.
func fullAPI() *api.Server {
	return api.New(api.Config{Extra: func(e *echo.Echo, s *api.Server) {
		fleetdrift.Register(e.Group("/api/v1"), nil, s.ReadMiddleware()...)
		fleetdrift.RegisterPredictions(e.Group("/api/v1"), nil, s.ReadMiddleware()...)
	}})
}

var echoParam = regexp.MustCompile(`:([A-Za-z0-9_]+)`)

// routerOperations lists what the API's echo router serves, with :param written {param}.
func routerOperations() map[string]bool {
	out := map[string]bool{}
	for _, r := range fullAPI().Echo().Routes() {
		if r.Method == "echo_route_any" || strings.HasSuffix(r.Path, "/*") {
			continue
		}
		out[r.Method+" "+echoParam.ReplaceAllString(r.Path, "{$1}")] = true
	}
	return out
}

// TestOpenAPIMatchesRouter: every route is documented and every documented operation is a route.
func TestOpenAPIMatchesRouter(t *testing.T) {
	doc := loadOpenAPI(t)
	if v, _ := doc["openapi"].(string); !strings.HasPrefix(v, "3.0.") {
		t.Errorf("openapi = %q, want 3.0.x", v)
	}
	routes := routerOperations()
	documented := map[string]bool{}
	for _, o := range operations(t, doc) {
		documented[o.key] = true
		if !routes[o.key] {
			t.Errorf("openapi.yaml documents %s, which the router does not serve", o.key)
		}
	}
	var missing []string
	for k := range routes {
		if !documented[k] {
			missing = append(missing, k)
		}
	}
	sort.Strings(missing)
	for _, k := range missing {
		t.Errorf("route %s is missing from openapi.yaml", k)
	}
	if len(routes) == 0 {
		t.Fatal("the router has no routes")
	}
}

// TestOpenAPIOperations: each operation has an operationId (unique), declares responses with
// descriptions, declares its path parameters, and under /api/v1 the auth answers and its roles.
func TestOpenAPIOperations(t *testing.T) {
	doc := loadOpenAPI(t)
	ids := map[string]string{}
	for _, o := range operations(t, doc) {
		t.Run(o.key, func(t *testing.T) {
			id, _ := o.op["operationId"].(string)
			if id == "" {
				t.Error("no operationId")
			} else if prev, dup := ids[id]; dup {
				t.Errorf("operationId %q also used by %s", id, prev)
			}
			ids[id] = o.key
			if d, _ := o.op["description"].(string); d == "" {
				t.Error("no description")
			}
			responses, _ := o.op["responses"].(map[string]any)
			if len(responses) == 0 {
				t.Fatal("declares no responses")
			}
			has2xx := false
			for code, r := range responses {
				if strings.HasPrefix(code, "2") {
					has2xx = true
				}
				rm, _ := r.(map[string]any)
				if rm["$ref"] == nil && rm["description"] == nil {
					t.Errorf("response %s has neither $ref nor description", code)
				}
			}
			if !has2xx {
				t.Error("declares no 2xx response")
			}
			declared := map[string]bool{}
			for _, p := range parameters(t, doc, o) {
				if p["in"] == "path" {
					declared[fmt.Sprint(p["name"])] = true
					if p["required"] != true {
						t.Errorf("path parameter %v is not required", p["name"])
					}
				}
			}
			for _, m := range regexp.MustCompile(`\{([^}]+)\}`).FindAllStringSubmatch(o.path, -1) {
				if !declared[m[1]] {
					t.Errorf("path parameter {%s} is not declared", m[1])
				}
				delete(declared, m[1])
			}
			for name := range declared {
				t.Errorf("declares path parameter %s the path does not have", name)
			}
			if !strings.HasPrefix(o.path, "/api/v1/") {
				return
			}
			if sec, ok := o.op["security"].([]any); ok && len(sec) == 0 {
				t.Error("an /api/v1 route must not switch authentication off")
			}
			for _, code := range []string{"401", "403"} {
				if responses[code] == nil {
					t.Errorf("does not declare %s", code)
				}
			}
			if roles, _ := o.op["x-driftline-roles"].([]any); len(roles) == 0 || roles[0] != state.RoleAdmin {
				t.Errorf("x-driftline-roles = %v, want a list starting with admin", o.op["x-driftline-roles"])
			}
		})
	}
}

// parameters returns an operation's parameters (path-level and operation-level), $refs resolved.
func parameters(t *testing.T, doc map[string]any, o operation) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, src := range []map[string]any{o.item, o.op} {
		list, _ := src["parameters"].([]any)
		for _, p := range list {
			pm, _ := p.(map[string]any)
			if ref, ok := pm["$ref"].(string); ok {
				r, err := resolve(doc, ref)
				if err != nil {
					t.Errorf("parameter: %v", err)
					continue
				}
				pm, _ = r.(map[string]any)
			}
			out = append(out, pm)
		}
	}
	return out
}

// resolve follows a local JSON pointer ("#/components/schemas/X").
func resolve(doc map[string]any, ref string) (any, error) {
	rest, ok := strings.CutPrefix(ref, "#/")
	if !ok {
		return nil, fmt.Errorf("$ref %q is not local", ref)
	}
	var cur any = doc
	for _, tok := range strings.Split(rest, "/") {
		tok = strings.ReplaceAll(strings.ReplaceAll(tok, "~1", "/"), "~0", "~")
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("$ref %q: %q is not inside an object", ref, tok)
		}
		if cur, ok = m[tok]; !ok {
			return nil, fmt.Errorf("$ref %q does not resolve: no %q", ref, tok)
		}
	}
	return cur, nil
}

// TestOpenAPIRefsResolve: every $ref in the document points at something that exists, and every
// component schema is used.
func TestOpenAPIRefsResolve(t *testing.T) {
	doc := loadOpenAPI(t)
	used := map[string]bool{}
	var walk func(path string, v any)
	walk = func(path string, v any) {
		switch x := v.(type) {
		case map[string]any:
			if ref, ok := x["$ref"].(string); ok {
				if _, err := resolve(doc, ref); err != nil {
					t.Errorf("at %s: %v", path, err)
				}
				used[ref] = true
			}
			for k, c := range x {
				walk(path+"/"+k, c)
			}
		case []any:
			for i, c := range x {
				walk(fmt.Sprintf("%s/%d", path, i), c)
			}
		}
	}
	walk("#", doc)
	if len(used) == 0 {
		t.Fatal("no $ref found: the walk is broken")
	}
	components, _ := doc["components"].(map[string]any)
	for _, kind := range []string{"schemas", "parameters", "responses", "headers"} {
		group, _ := components[kind].(map[string]any)
		for name := range group {
			if ref := "#/components/" + kind + "/" + name; !used[ref] {
				t.Errorf("%s is never used", ref)
			}
		}
	}
	if _, err := resolve(doc, "#/components/schemas/NoSuchSchema"); err == nil {
		t.Error("resolve accepted a missing schema")
	}
}

// TestOpenAPIProblemTypes: the Problem schema lists exactly the problem type URIs the API uses.
func TestOpenAPIProblemTypes(t *testing.T) {
	doc := loadOpenAPI(t)
	s, err := resolve(doc, "#/components/schemas/Problem/properties/type/enum")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, v := range s.([]any) {
		got = append(got, fmt.Sprint(v))
	}
	want := []string{
		api.ProblemInvalid, api.ProblemUnauthorized, api.ProblemForbidden, api.ProblemNotFound,
		api.ProblemConflict, api.ProblemExists, api.ProblemTooLarge, api.ProblemNoLeader,
		api.ProblemUnsupported, api.ProblemMethod, api.ProblemInternal,
	}
	sort.Strings(got)
	sort.Strings(want)
	if !slices.Equal(got, want) {
		t.Errorf("Problem.type enum = %v, want %v", got, want)
	}
}

// TestOpenAPIRolesMatchBehaviour: the roles each operation documents are exactly those the role
// table (checked against a running hub in TestRoleTable) finds admitted.
func TestOpenAPIRolesMatchBehaviour(t *testing.T) {
	doc := loadOpenAPI(t)
	admittedBy := map[string]map[string]bool{}
	for _, c := range roleTable {
		k := c.method + " " + echoParam.ReplaceAllString(c.route, "{$1}")
		if admittedBy[k] == nil {
			admittedBy[k] = map[string]bool{}
		}
		for i, role := range roleOrder {
			if c.want[i] != 403 && c.want[i] != 401 {
				admittedBy[k][role] = true
			}
		}
	}
	for _, o := range operations(t, doc) {
		if !strings.HasPrefix(o.path, "/api/v1/") {
			continue
		}
		var documented []string
		for _, r := range o.op["x-driftline-roles"].([]any) {
			documented = append(documented, fmt.Sprint(r))
		}
		var behaved []string
		for r := range admittedBy[o.key] {
			behaved = append(behaved, r)
		}
		sort.Strings(documented)
		sort.Strings(behaved)
		if !slices.Equal(documented, behaved) {
			t.Errorf("%s: x-driftline-roles %v, role table admits %v", o.key, documented, behaved)
		}
	}
}
