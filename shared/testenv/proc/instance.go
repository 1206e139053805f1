package proc

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/mailferry/mailferry/shared/testenv/rig"
)

// OwnerFile in an instance directory holds the pid of the test process
// that made it, so that a later run can remove what a killed one left.
const OwnerFile = "owner.pid"

// Require fails the test when problem (why the peer cannot run here) is
// not empty and the environment variable CI is "true"; elsewhere it skips
// the test with problem as the reason.
func Require(t rig.TB, problem string) {
	t.Helper()
	if problem == "" {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatal(problem)
	}
	t.Skip(problem)
}

// Need is a program a peer runs and the Debian package that has it.
type Need struct{ Bin, Package string }

// Missing says what keeps a peer from running here (for Require): the
// first program not on PATH, or, when asRoot is set, not running as root
// (asRoot says why root is needed). It returns "" when nothing does.
func Missing(asRoot string, needs ...Need) string {
	for _, n := range needs {
		if _, err := exec.LookPath(n.Bin); err != nil {
			return fmt.Sprintf("%s not found on PATH: install the Debian package %s (apt-get install -y %s)", n.Bin, n.Package, n.Package)
		}
	}
	if asRoot != "" && os.Geteuid() != 0 {
		return asRoot
	}
	return ""
}

// InstanceDir makes a directory named prefix+random under os.TempDir for
// one test's daemons, owned by this process and removed after the test.
// First it removes the directories of prefix whose owner is gone, calling
// killStale on each (see Sweep). Failures are fatal.
func InstanceDir(t rig.TB, prefix string, killStale func(dir string)) string {
	t.Helper()
	root := os.TempDir()
	Sweep(t, root, prefix, killStale)
	dir, err := os.MkdirTemp(root, prefix)
	if err != nil {
		t.Fatalf("%s: create instance dir: %v", strings.TrimSuffix(prefix, "-"), err)
	}
	t.Cleanup(func() {
		if err := os.RemoveAll(dir); err != nil {
			t.Errorf("%s: remove %s: %v", strings.TrimSuffix(prefix, "-"), dir, err)
		}
	})
	if err := os.WriteFile(filepath.Join(dir, OwnerFile), []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
		t.Fatalf("%s: write owner file: %v", strings.TrimSuffix(prefix, "-"), err)
	}
	return dir
}

// Sweep removes the instance directories prefix* under root whose owning
// process is gone, after killStale(dir) has killed a daemon still running
// there. Daemons normally die with their test binary (Options.DeathSignal),
// so this mostly reclaims disk space.
func Sweep(t rig.TB, root, prefix string, killStale func(dir string)) {
	t.Helper()
	matches, err := filepath.Glob(filepath.Join(root, prefix+"*", OwnerFile))
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
		if err != nil || owner <= 0 || alive(owner) {
			continue
		}
		if killStale != nil {
			killStale(dir)
		}
		if err := os.RemoveAll(dir); err != nil {
			t.Logf("%s: remove stale instance %s: %v", strings.TrimSuffix(prefix, "-"), dir, err)
		}
	}
}

// Rig says how StartT runs one test peer (a server, a cluster) of type T.
type Rig[T any] struct {
	// Name prefixes messages ("dovecottest").
	Name string
	// Prefix names its instance directories (see InstanceDir).
	Prefix string
	// Problem says why the peer cannot run here; "" when it can.
	Problem string
	// Mode, when set, is given to the instance directory.
	Mode os.FileMode
	// Timeout bounds Start.
	Timeout time.Duration
	// KillStale kills what a killed test binary left running in dir.
	KillStale func(dir string)
	// Start starts the peer in dir; Stop stops it.
	Start func(ctx context.Context, dir string) (T, error)
	Stop  func(T) error
	// Logs are the log tails shown when the test failed.
	Logs func(T) string
}

// StartT starts a peer for a test: it skips the test (fails it under CI)
// when r.Problem is set, makes an instance directory (InstanceDir), starts
// the peer within r.Timeout, and registers its Stop, after the log tails
// when the test failed, with t.Cleanup. Failures are fatal.
func StartT[T any](t rig.TB, r Rig[T]) T {
	t.Helper()
	Require(t, r.Problem)
	dir := InstanceDir(t, r.Prefix, r.KillStale)
	if r.Mode != 0 {
		if err := os.Chmod(dir, r.Mode); err != nil {
			t.Fatalf("%s: chmod %s: %v", r.Name, dir, err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), r.Timeout)
	defer cancel()
	peer, err := r.Start(ctx, dir)
	if err != nil {
		t.Fatalf("%s: %v", r.Name, err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("%s: %s", r.Name, r.Logs(peer))
		}
		if err := r.Stop(peer); err != nil {
			t.Errorf("%s: %v", r.Name, err)
		}
	})
	return peer
}
