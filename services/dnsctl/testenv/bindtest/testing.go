package bindtest

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/mailferry/mailferry/shared/testenv/proc"
	"github.com/mailferry/mailferry/shared/testenv/rig"
)

// StartT starts a cluster for a test in a directory under os.TempDir that
// is removed afterwards; Stop is registered with t.Cleanup and the log
// tails are printed when the test failed. Failures are fatal.
func StartT(t rig.TB, opts Options) *Cluster {
	t.Helper()
	return proc.StartT(t, proc.Rig[*Cluster]{
		Name: "bindtest", Prefix: tempPrefix, Problem: Problem(), Timeout: startTTimeout,
		KillStale: func(dir string) {
			for _, sub := range []string{"primary", "secondary"} {
				killStale(filepath.Join(dir, sub))
			}
		},
		Start: func(ctx context.Context, dir string) (*Cluster, error) { return Start(ctx, dir, opts) },
		Stop:  (*Cluster).Stop,
		Logs: func(c *Cluster) string {
			var b strings.Builder
			for _, s := range c.Servers() {
				fmt.Fprintf(&b, "tail of %s:\n%s", s.LogPath, s.LogTail(40))
			}
			return b.String()
		},
	})
}

// Require fails the test when BIND is unusable and the environment
// variable CI is "true"; elsewhere it skips the test, naming the Debian
// package to install.
func Require(t rig.TB) {
	t.Helper()
	proc.Require(t, Problem())
}

// Problem says why BIND cannot be run here, or returns "".
func Problem() string {
	return proc.Missing("bindtest must run as root: named runs without -u",
		proc.Need{Bin: "named", Package: DebianPackage}, proc.Need{Bin: "nsupdate", Package: DebianUtilsPackage},
		proc.Need{Bin: "dig", Package: DebianUtilsPackage})
}

// killStale kills the named of a server dir, but only if named.pid still
// names a named started with this dir's config.
func killStale(dir string) {
	proc.KillStale(filepath.Join(dir, "named.pid"), filepath.Join(dir, "named.conf"))
}
