#!/usr/bin/env bash
# Lists exported functions and methods whose name appears in no non-test Go file except the line
# that defines it: candidates for removal or for a move into a _test.go file. Test-support
# packages (*test, testhelp) and interface methods (String, Error, raft's and badger's, ...) are
# expected hits; read each before acting. Run from the repository root.
set -u
files=$(mktemp)
trap 'rm -f "$files"' EXIT
go list -f '{{$d := .Dir}}{{range .GoFiles}}{{$d}}/{{.}}{{"\n"}}{{end}}' ./... >"$files"
root=$(pwd)
while read -r f; do
  grep -nE '^func (\([^)]*\) )?[A-Z][A-Za-z0-9_]*[[(]' "$f" | while IFS=: read -r ln rest; do
    name=$(sed -E 's/^func (\([^)]*\) )?([A-Za-z0-9_]+).*/\2/' <<<"$rest")
    uses=$(xargs grep -wn -- "$name" <"$files" | grep -v "^$f:$ln:" | grep -cvE '^[^:]*:[0-9]*:\s*//')
    if [ "$uses" = 0 ]; then
      echo "${f#"$root"/}:$ln $name"
    fi
  done
done <"$files"
