package config_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/driftline/driftline/agent/config"
	"github.com/driftline/driftline/shared/artifact"
	"github.com/driftline/driftline/shared/enrol"
)

func testKey(t testing.TB) string {
	t.Helper()
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return artifact.PublicKeyBase64(pub)
}

const minimal = `device_id: d1
token: secret
brokers: [tcp://127.0.0.1:1883]
trusted_keys: [3q2+7wAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=]
`

func TestParse(t *testing.T) {
	// The all-zero ed25519 key as a PEM PUBLIC KEY block (PKIX, as openssl writes it).
	pem := strings.ReplaceAll("-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n-----END PUBLIC KEY-----", "\n", "\n    ")
	cases := []struct {
		name    string
		yaml    string
		wantErr error
		// errHas lists substrings the error must hold (key names and lines).
		errHas []string
		check  func(t *testing.T, c config.Config)
	}{
		{name: "minimal gets defaults", yaml: minimal, check: func(t *testing.T, c config.Config) {
			d := config.Default()
			if c.Metrics != d.Metrics || c.Heartbeat.D() != 10*time.Second || c.Window != (config.Window{}) || c.TopicPrefix != "dl/v1" || c.StateDir == "" {
				t.Fatalf("defaults not applied: %+v", c)
			}
		}},
		{name: "PEM key and overrides", yaml: strings.Replace(minimal, "trusted_keys: [3q2+7wAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=]\n", "", 1) + "trusted_keys:\n  - |\n    " + pem + "\nheartbeat: 250ms\nbuffer: {max_age: 90}\nfetch: {requests: 2, digests: 4}\nmetrics: \"off\"\n",
			check: func(t *testing.T, c config.Config) {
				if c.Heartbeat.D() != 250*time.Millisecond || c.Buffer.MaxAge.D() != 90*time.Second || c.Fetch.Requests != 2 || c.Metrics != config.MetricsOff {
					t.Fatalf("overrides: %+v", c)
				}
				if _, err := c.Keys(); err != nil {
					t.Fatal(err)
				}
			}},
		{name: "empty file", yaml: "", wantErr: config.ErrInvalid, errHas: []string{"device_id: required", "token: required", "brokers", "trusted_keys"}},
		{name: "unknown key with line", yaml: minimal + "heartbeet: 5s\n", wantErr: config.ErrSyntax, errHas: []string{"line 5", "heartbeet"}},
		// The window is unset unless written, so the contract's x-driftline.window applies.
		{name: "window part set", yaml: minimal + "window: {seconds: 5}\n", check: func(t *testing.T, c config.Config) {
			if c.Window != (config.Window{Seconds: 5}) {
				t.Fatalf("window %+v, want seconds 5 and rows unset", c.Window)
			}
		}},
		{name: "quarantine caps", yaml: minimal + "quarantine:\n  max_rows: 500\n  max_bytes: 1048576\n  max_age: 48h\n", check: func(t *testing.T, c config.Config) {
			if c.Quarantine != (config.Quarantine{MaxRows: 500, MaxBytes: 1 << 20, MaxAge: config.Duration(48 * time.Hour)}) {
				t.Fatalf("quarantine %+v", c.Quarantine)
			}
		}},
		{name: "quarantine defaults", yaml: minimal, check: func(t *testing.T, c config.Config) {
			if c.Quarantine != (config.Quarantine{MaxRows: 10000, MaxBytes: 16 << 20, MaxAge: config.Duration(720 * time.Hour)}) {
				t.Fatalf("quarantine %+v", c.Quarantine)
			}
		}},
		{name: "quarantine out of range", yaml: minimal + "quarantine:\n  max_rows: 0\n  max_bytes: 100\n  max_age: -1h\n", wantErr: config.ErrInvalid,
			errHas: []string{"line 6: quarantine.max_rows: must be within 1..1000000, got 0", "line 7: quarantine.max_bytes: 100 is below the 64 KiB minimum", "line 8: quarantine.max_age: must be positive"}},
		{name: "outputs and samples", yaml: minimal + "outputs:\n  max_pending: 5000\n  max_age: 24h\nsamples:\n  max_rows: 50\n  max_bytes_per_day: 65536\n", check: func(t *testing.T, c config.Config) {
			if c.Outputs != (config.Outputs{MaxPending: 5000, MaxAge: config.Duration(24 * time.Hour)}) || c.Samples != (config.Samples{MaxRows: 50, MaxBytesPerDay: 65536}) {
				t.Fatalf("outputs %+v samples %+v", c.Outputs, c.Samples)
			}
		}},
		{name: "outputs and samples out of range", yaml: minimal + "outputs:\n  max_pending: 0\nsamples:\n  max_rows: 0\n  max_bytes_per_day: 0\n", wantErr: config.ErrInvalid,
			errHas: []string{"line 6: outputs.max_pending", "line 8: samples.max_rows", "line 9: samples.max_bytes_per_day"}},
		{name: "quarantine unknown key", yaml: minimal + "quarantine:\n  max_rowz: 5\n", wantErr: config.ErrSyntax, errHas: []string{"line 6", "max_rowz"}},
		{name: "wrong type with line", yaml: minimal + "window:\n  rows: many\n", wantErr: config.ErrSyntax, errHas: []string{"line 6"}},
		{name: "bad duration", yaml: minimal + "heartbeat: soon\n", wantErr: config.ErrSyntax, errHas: []string{"line 5", "soon"}},
		{name: "bad broker scheme with line", yaml: "device_id: d1\ntoken: x\ntrusted_keys: [3q2+7wAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=]\nbrokers:\n  - tcp://a:1\n  - http://b:2\n", wantErr: config.ErrInvalid, errHas: []string{"line 6: brokers[1]", "http"}},
		{name: "broker without port", yaml: strings.Replace(minimal, "tcp://127.0.0.1:1883", "ssl://host", 1), wantErr: config.ErrInvalid, errHas: []string{"line 3: brokers[0]"}},
		{name: "bad key", yaml: strings.Replace(minimal, "3q2+7wAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", "nope", 1), wantErr: config.ErrInvalid, errHas: []string{"line 4: trusted_keys[0]"}},
		{name: "device id with slash", yaml: strings.Replace(minimal, "d1", "a/b", 1), wantErr: config.ErrInvalid, errHas: []string{"line 1: device_id"}},
		{name: "ranges", yaml: minimal + "window: {rows: 0, seconds: -1}\nfetch:\n  digests: 999\nheartbeat: 1ms\nlog_level: loud\n", wantErr: config.ErrInvalid,
			errHas: []string{"line 5: window.rows", "window.seconds", "line 7: fetch.digests", "line 8: heartbeat", "line 9: log_level"}},
		{name: "tls pair", yaml: minimal + "tls: {cert_file: c.pem}\n", wantErr: config.ErrInvalid, errHas: []string{"line 5: tls"}},
		{name: "bad metrics", yaml: minimal + "metrics: nowhere\n", wantErr: config.ErrInvalid, errHas: []string{"line 5: metrics"}},
		{name: "bad prefix", yaml: minimal + "topic_prefix: a/#\n", wantErr: config.ErrInvalid, errHas: []string{"topic_prefix"}},
		{name: "hub not a URL", yaml: minimal + "hub: ftp://x\n", wantErr: config.ErrInvalid, errHas: []string{"line 5: hub"}},
		{name: "not a mapping", yaml: "- a\n- b\n", wantErr: config.ErrSyntax, errHas: []string{"line 1", "mapping"}},
		{name: "two documents", yaml: minimal + "---\nx: 1\n", wantErr: config.ErrSyntax},
		{name: "aliases refused", yaml: "a: &x [1]\n" + minimal, wantErr: config.ErrSyntax, errHas: []string{"line 1"}},
		{name: "alias use refused", yaml: minimal + "x: &a 1\ny: *a\n", wantErr: config.ErrSyntax, errHas: []string{"alias"}},
		{name: "not yaml", yaml: "device_id: [\n", wantErr: config.ErrSyntax},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := config.Parse([]byte(tc.yaml))
			if tc.wantErr == nil {
				if err != nil {
					t.Fatal(err)
				}
				tc.check(t, c)
				return
			}
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("got %v, want %v", err, tc.wantErr)
			}
			for _, s := range tc.errHas {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q lacks %q", err, s)
				}
			}
			t.Log(err)
		})
	}
}

// TestCLIWrittenConfig checks that the enrolment file `driftline device add --agent-config`
// writes (shared/enrol) is a valid agent config as it is.
func TestCLIWrittenConfig(t *testing.T) {
	key := testKey(t)
	path := filepath.Join(t.TempDir(), "agent.yaml")
	err := enrol.Write(path, enrol.Config{DeviceID: "edge-1", Token: "tok", Brokers: []string{"tcp://127.0.0.1:1883", "ssl://h:8883"},
		TrustedKeys: []string{key}, Hub: "http://127.0.0.1:8080", TopicPrefix: "site9/dl"})
	if err != nil {
		t.Fatal(err)
	}
	c, err := config.Load(path)
	if err != nil {
		b, _ := os.ReadFile(path)
		t.Fatalf("%v\n%s", err, b)
	}
	if c.TopicPrefix != "site9/dl" {
		t.Fatalf("topic prefix %q", c.TopicPrefix)
	}
	if c.DeviceID != "edge-1" || c.Token != "tok" || len(c.Brokers) != 2 || c.TrustedKeys[0] != key || c.Hub != "http://127.0.0.1:8080" {
		t.Fatalf("%+v", c)
	}
}

func TestLoadErrors(t *testing.T) {
	dir := t.TempDir()
	if _, err := config.Load(filepath.Join(dir, "missing.yaml")); err == nil || !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing file: %v", err)
	}
	big := filepath.Join(dir, "big.yaml")
	if err := os.WriteFile(big, make([]byte, config.MaxFileSize+1), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := config.Load(big); !errors.Is(err, config.ErrTooLarge) {
		t.Fatalf("big file: %v", err)
	}
}

// TestDefaultTags keeps the `default` tags (what the doc shows) equal to Default().
func TestDefaultTags(t *testing.T) {
	var walk func(t *testing.T, v reflect.Value, path string)
	walk = func(t *testing.T, v reflect.Value, path string) {
		for i := 0; i < v.NumField(); i++ {
			f := v.Type().Field(i)
			p := path + strings.Split(f.Tag.Get("yaml"), ",")[0]
			fv := v.Field(i)
			if f.Type.Kind() == reflect.Struct {
				walk(t, fv, p+".")
				continue
			}
			def, has := f.Tag.Lookup("default")
			var got string
			switch x := fv.Interface().(type) {
			case config.Duration:
				want, err := config.ParseDuration(def)
				if has && (err != nil || want != x) {
					t.Errorf("%s: tag %q, Default() %v", p, def, x)
				}
				if !has && x != 0 {
					t.Errorf("%s: Default() %v but no default tag", p, x)
				}
				continue
			case string:
				got = x
			case int:
				got = strconv.Itoa(x)
			case int64:
				got = strconv.FormatInt(x, 10)
			case bool:
				if x {
					got = "true"
				}
			default:
				if !fv.IsZero() {
					t.Errorf("%s: Default() sets %v with no default tag", p, x)
				}
				continue
			}
			if has && got != def || !has && got != "" && got != "0" {
				t.Errorf("%s: tag %q, Default() %q", p, def, got)
			}
		}
	}
	walk(t, reflect.ValueOf(config.Default()), "")
}

// TestDocUpToDate fails when docs/agent-config.md is not what `go generate ./agent/config`
// writes, and checks that its example is a valid config.
func TestDocUpToDate(t *testing.T) {
	got, err := os.ReadFile(filepath.Join("..", "..", "docs", "agent-config.md"))
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != config.Markdown() {
		t.Fatal("docs/agent-config.md is stale: run `go generate ./agent/config`")
	}
	md := config.Markdown()
	start := strings.Index(md, "```yaml\n") + len("```yaml\n")
	example := md[start : start+strings.Index(md[start:], "```")]
	if _, err := config.Parse([]byte(example)); err != nil {
		t.Fatalf("example config: %v", err)
	}
}

func TestParseDuration(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want time.Duration
		ok   bool
	}{{"10s", 10 * time.Second, true}, {"1m30s", 90 * time.Second, true}, {"15", 15 * time.Second, true}, {"0.5", 500 * time.Millisecond, true},
		{"", 0, false}, {"-", 0, false}, {"1e400", 0, false}, {"ten", 0, false}, {"NaN", 0, false}, {"1e3", 0, false}} {
		got, err := config.ParseDuration(tc.in)
		if (err == nil) != tc.ok || tc.ok && got.D() != tc.want {
			t.Errorf("ParseDuration(%q) = %v, %v", tc.in, got, err)
		}
	}
}

// TestMarshalRoundTrip: a Config written as YAML (as tests and tools write agent.yaml) parses
// back to the same Config; an unset window stays unset.
func TestMarshalRoundTrip(t *testing.T) {
	c, err := config.Parse([]byte(minimal))
	if err != nil {
		t.Fatal(err)
	}
	b, err := yaml.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	back, err := config.Parse(b)
	if err != nil {
		t.Fatalf("%v:\n%s", err, b)
	}
	again, _ := yaml.Marshal(back)
	if string(again) != string(b) || back.Window != (config.Window{}) {
		t.Fatalf("round trip changed the config:\n%s\n%s", b, again)
	}
}
