// Package kubernetes holds no code: manifests_test.go decodes hub.yaml strictly against the
// Kubernetes API types, checks the compose file's shape, and has systemd-analyze verify the units.
package kubernetes
