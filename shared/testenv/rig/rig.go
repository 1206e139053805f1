// Package rig holds what the test rigs (dovecottest, bindtest, corpus)
// need of a test, so that they take a *testing.T without linking the
// testing package into the binaries that also use them (bench, chaos).
package rig

// TB is the part of testing.TB the rigs use; *testing.T and *testing.B
// satisfy it.
type TB interface {
	Helper()
	Cleanup(func())
	Errorf(format string, args ...any)
	Failed() bool
	Fatal(args ...any)
	Fatalf(format string, args ...any)
	Logf(format string, args ...any)
	Skip(args ...any)
	Skipf(format string, args ...any)
}
