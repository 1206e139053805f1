package dovecottest

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"github.com/mailferry/mailferry/shared/testenv/proc"
	"github.com/mailferry/mailferry/shared/testenv/rig"
)

// tempPrefix names the instance directories StartT creates in os.TempDir.
const tempPrefix = "mailferry-dovecottest-"

// startTTimeout bounds StartT; a loaded CI machine starting many instances
// in parallel is slower than a developer's.
const startTTimeout = 60 * time.Second

// Require fails the test when dovecot is unusable and the environment
// variable CI is "true"; elsewhere it skips the test, naming the Debian
// package to install.
func Require(t rig.TB) {
	t.Helper()
	proc.Require(t, problem())
}

// problem says why Dovecot cannot be run here, or returns "".
func problem() string {
	return proc.Missing("dovecottest must run as root: Dovecot switches to the users vmail and dovecot",
		proc.Need{Bin: "dovecot", Package: DebianPackage}, proc.Need{Bin: "doveadm", Package: DebianPackage})
}

// StartT starts an instance for a test. Its directory is created under
// os.TempDir with mode 0755 (t.TempDir's parents are 0700, which locks out
// Dovecot's auth process) and removed after the test; Stop is registered
// with t.Cleanup and the log tail is printed when the test failed. Failures
// are fatal. Instances left behind by a killed test binary are removed.
func StartT(t rig.TB, opts Options) *Server {
	t.Helper()
	return proc.StartT(t, proc.Rig[*Server]{
		Name: "dovecottest", Prefix: tempPrefix, Problem: problem(), Mode: 0o755, Timeout: startTTimeout,
		KillStale: killStaleMaster,
		Start:     func(ctx context.Context, dir string) (*Server, error) { return Start(ctx, dir, opts) },
		Stop:      (*Server).Stop,
		Logs:      func(s *Server) string { return fmt.Sprintf("tail of %s:\n%s", s.LogPath, s.LogTail(40)) },
	})
}

// killStaleMaster kills the process group of the master in dir, but only if
// master.pid still names a dovecot started with this dir's config.
func killStaleMaster(dir string) {
	proc.KillStale(filepath.Join(dir, "run", "master.pid"), filepath.Join(dir, "dovecot.conf"))
}
