//go:build !unix

package modelstore

import "os/exec"

// setProcessGroup leaves cmd as it is: outside Unix, cancellation kills the command only.
func setProcessGroup(*exec.Cmd) {}
