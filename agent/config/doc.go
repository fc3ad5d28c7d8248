package config

import (
	"fmt"
	"reflect"
	"strings"
)

// Markdown returns the reference of the configuration file, generated from Config's `yaml`,
// `default` and `doc` tags: the content of docs/agent-config.md.
func Markdown() string {
	var b strings.Builder
	b.WriteString("# driftline-agent configuration\n\n")
	b.WriteString("<!-- Generated from agent/config (Config's struct tags) by `go generate ./agent/config`. Do not edit; a test fails when this file is stale. -->\n\n")
	b.WriteString("`driftline-agent run --config FILE` reads one YAML mapping. Unknown keys are refused, every\n")
	b.WriteString("problem is reported with its key and line, and `--state-dir`, `--model-dir` and `--metrics`\n")
	b.WriteString("override the file. `driftline device add ID --agent-config FILE` writes a file with `device_id`,\n")
	b.WriteString("`token`, `brokers`, `trusted_root` and `hub` that runs as it is. Durations are Go duration text\n")
	b.WriteString("(`10s`, `1m30s`) or a number of seconds. The example below uses the older `trusted_keys` form\n")
	b.WriteString("for brevity; a `trusted_root` is a whole TUF root.json (docs/security.md).\n\n")
	b.WriteString("| key | type | default | meaning |\n| --- | --- | --- | --- |\n")
	writeFields(&b, reflect.TypeOf(Config{}), "")
	b.WriteString("\n## Example\n\n```yaml\n")
	b.WriteString(exampleYAML)
	b.WriteString("```\n")
	return b.String()
}

func writeFields(b *strings.Builder, t reflect.Type, prefix string) {
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		key := strings.Split(f.Tag.Get("yaml"), ",")[0]
		if key == "" || key == "-" {
			continue
		}
		path := prefix + key
		def := f.Tag.Get("default")
		if def != "" {
			def = "`" + def + "`"
		}
		fmt.Fprintf(b, "| `%s` | %s | %s | %s |\n", path, typeName(f.Type), def, f.Tag.Get("doc"))
		if f.Type.Kind() == reflect.Struct {
			writeFields(b, f.Type, path+".")
		}
	}
}

func typeName(t reflect.Type) string {
	switch {
	case t == reflect.TypeOf(Duration(0)):
		return "duration"
	case t.Kind() == reflect.Struct:
		return "mapping"
	case t.Kind() == reflect.Slice:
		return "list of " + typeName(t.Elem())
	case t.Kind() == reflect.Int, t.Kind() == reflect.Int64:
		return "integer"
	case t.Kind() == reflect.Bool:
		return "boolean"
	}
	return t.Kind().String()
}

// exampleYAML is a complete, valid configuration (the tests parse it).
const exampleYAML = `device_id: pump-17
token: dl_dev_9f3c...                # from driftline device add
brokers:
  - ssl://mqtt-1.example.net:8883
  - ssl://mqtt-2.example.net:8883    # failover, in order
tls:
  ca_file: /etc/driftline/ca.pem
trusted_keys:
  - 3q2+7wAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=
hub: https://hub.example.net:8080
state_dir: /var/lib/driftline-agent
model_dir: /var/lib/driftline-agent/models
metrics: 127.0.0.1:9100
health_check:
  command: [/usr/local/bin/model-smoke-test, --quick]
  timeout: 20s
chunk_cache_bytes: 536870912
buffer:
  max_bytes: 134217728
  max_age: 72h
quarantine:
  max_rows: 50000
  max_bytes: 33554432
  max_age: 336h
window:
  rows: 5000
  seconds: 30
contract: /etc/driftline/contract.json
heartbeat: 10s
`
