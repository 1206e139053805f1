package bindtest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/mailferry/mailferry/shared/testenv/rig"
)

// tempPrefix names the instance directories StartT creates in os.TempDir.
const tempPrefix = "mailferry-bindtest-"

// ownerFile in an instance dir holds the pid of the process that created
// it, so a later StartT can remove what a killed test binary left behind.
const ownerFile = "owner.pid"

// startTTimeout bounds StartT; thousands of zones load slower on CI.
const startTTimeout = 3 * time.Minute

// Require fails the test when BIND is unusable and the environment
// variable CI is "true"; elsewhere it skips the test, naming the Debian
// package to install.
func Require(t rig.TB) {
	t.Helper()
	problem := Problem()
	if problem == "" {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatal(problem)
	}
	t.Skip(problem)
}

// Problem says why BIND cannot be run here, or returns "".
func Problem() string {
	for _, bin := range []struct{ name, pkg string }{
		{"named", DebianPackage}, {"nsupdate", DebianUtilsPackage}, {"dig", DebianUtilsPackage},
	} {
		if _, err := exec.LookPath(bin.name); err != nil {
			return fmt.Sprintf("%s not found on PATH: install the Debian package %s (apt-get install -y %s)", bin.name, bin.pkg, bin.pkg)
		}
	}
	if os.Geteuid() != 0 {
		return "bindtest must run as root: named runs without -u"
	}
	return ""
}

// StartT starts a cluster for a test in a directory under os.TempDir that
// is removed afterwards; Stop is registered with t.Cleanup and the log
// tails are printed when the test failed. Failures are fatal.
func StartT(t rig.TB, opts Options) *Cluster {
	t.Helper()
	Require(t)
	root := os.TempDir()
	sweepStale(t, root)
	dir, err := os.MkdirTemp(root, tempPrefix)
	if err != nil {
		t.Fatalf("bindtest: create instance dir: %v", err)
	}
	t.Cleanup(func() {
		if err := os.RemoveAll(dir); err != nil {
			t.Errorf("bindtest: remove %s: %v", dir, err)
		}
	})
	if err := os.WriteFile(filepath.Join(dir, ownerFile), []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
		t.Fatalf("bindtest: write owner file: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), startTTimeout)
	defer cancel()
	c, err := Start(ctx, dir, opts)
	if err != nil {
		t.Fatalf("bindtest: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, s := range c.Servers() {
				t.Logf("bindtest: tail of %s:\n%s", s.LogPath, s.LogTail(40))
			}
		}
		if err := c.Stop(); err != nil {
			t.Errorf("bindtest: %v", err)
		}
	})
	return c
}

// sweepStale removes instance dirs under root whose creating process is
// gone, killing a named that still runs there (Pdeathsig normally takes
// care of that; this mostly reclaims disk space).
func sweepStale(t rig.TB, root string) {
	t.Helper()
	matches, err := filepath.Glob(filepath.Join(root, tempPrefix+"*", ownerFile))
	if err != nil {
		return
	}
	for _, m := range matches {
		dir := filepath.Dir(m)
		b, err := os.ReadFile(m)
		if err != nil {
			continue
		}
		owner, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil || owner <= 0 || processAlive(owner) {
			continue
		}
		for _, sub := range []string{"primary", "secondary"} {
			killStale(filepath.Join(dir, sub))
		}
		if err := os.RemoveAll(dir); err != nil {
			t.Logf("bindtest: remove stale instance %s: %v", dir, err)
		}
	}
}

// killStale kills the named of a server dir, but only if named.pid still
// names a named started with this dir's config: pids are reused.
func killStale(dir string) {
	b, err := os.ReadFile(filepath.Join(dir, "named.pid"))
	if err != nil {
		return
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 1 {
		return
	}
	cmdline, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "cmdline"))
	if err != nil || !strings.Contains(string(cmdline), filepath.Join(dir, "named.conf")) {
		return
	}
	_ = syscall.Kill(-pid, syscall.SIGKILL)
}
