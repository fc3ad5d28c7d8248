// Package layout holds tests of the repository's shape rather than its behaviour: no package
// under agent/ imports one under hub/ and none under hub/ imports one under agent/, tests
// included (tests that span both binaries live in systemtest/); and no function outside tests
// is 100 lines or longer; internal/testhelp exports only WaitFor and Logger (with LogWriter). It
// has no non-test code.
package layout
