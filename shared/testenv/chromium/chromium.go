// Package chromium finds Debian's Chromium for the tests that render
// pages in it headless (the auth service's pages, the cutover reports).
package chromium

import (
	"os/exec"

	"github.com/mailferry/mailferry/shared/testenv/proc"
	"github.com/mailferry/mailferry/shared/testenv/rig"
)

// DebianPackage is the package scripts/test installs.
const DebianPackage = "chromium"

// Require returns the path of chromium; when it is missing the test fails
// under CI=true and is skipped elsewhere.
func Require(t rig.TB) string {
	t.Helper()
	proc.Require(t, proc.Missing("", proc.Need{Bin: "chromium", Package: DebianPackage}))
	path, _ := exec.LookPath("chromium")
	return path
}
