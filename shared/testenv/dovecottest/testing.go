package dovecottest

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
const tempPrefix = "mailferry-dovecottest-"

// ownerFile in an instance dir holds the pid of the process that created
// it, so a later StartT can remove what a killed test binary left behind.
const ownerFile = "owner.pid"

// startTTimeout bounds StartT; a loaded CI machine starting many instances
// in parallel is slower than a developer's.
const startTTimeout = 60 * time.Second

// Require fails the test when dovecot is unusable and the environment
// variable CI is "true"; elsewhere it skips the test, naming the Debian
// package to install.
func Require(t rig.TB) {
	t.Helper()
	var problem string
	for _, bin := range []string{"dovecot", "doveadm"} {
		if _, err := exec.LookPath(bin); err != nil {
			problem = fmt.Sprintf("%s not found on PATH: install the Debian package %s (apt-get install -y %s)", bin, DebianPackage, DebianPackage)
			break
		}
	}
	if problem == "" && os.Geteuid() != 0 {
		problem = "dovecottest must run as root: Dovecot switches to the users vmail and dovecot"
	}
	if problem == "" {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatal(problem)
	}
	t.Skip(problem)
}

// StartT starts an instance for a test. Its directory is created under
// os.TempDir with mode 0755 (t.TempDir's parents are 0700, which locks out
// Dovecot's auth process) and removed after the test; Stop is registered
// with t.Cleanup and the log tail is printed when the test failed. Failures
// are fatal. Instances left behind by a killed test binary are removed.
func StartT(t rig.TB, opts Options) *Server {
	t.Helper()
	Require(t)
	root := os.TempDir()
	sweepStale(t, root)
	dir, err := os.MkdirTemp(root, tempPrefix)
	if err != nil {
		t.Fatalf("dovecottest: create instance dir: %v", err)
	}
	t.Cleanup(func() {
		if err := os.RemoveAll(dir); err != nil {
			t.Errorf("dovecottest: remove %s: %v", dir, err)
		}
	})
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatalf("dovecottest: chmod %s: %v", dir, err)
	}
	if err := os.WriteFile(filepath.Join(dir, ownerFile), []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
		t.Fatalf("dovecottest: write owner file: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), startTTimeout)
	defer cancel()
	s, err := Start(ctx, dir, opts)
	if err != nil {
		t.Fatalf("dovecottest: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("dovecottest: tail of %s:\n%s", s.LogPath, s.LogTail(40))
		}
		if err := s.Stop(); err != nil {
			t.Errorf("dovecottest: %v", err)
		}
	})
	return s
}

// sweepStale removes instance dirs under root whose creating process is
// gone, killing a master that still runs there. The master normally dies
// with its parent (Pdeathsig), so this mostly reclaims disk space.
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
		killStaleMaster(dir)
		if err := os.RemoveAll(dir); err != nil {
			t.Logf("dovecottest: remove stale instance %s: %v", dir, err)
		}
	}
}

func processAlive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || err == syscall.EPERM
}

// killStaleMaster kills the process group of the master in dir, but only if
// master.pid still names a dovecot started with this dir's config: pids
// are reused.
func killStaleMaster(dir string) {
	b, err := os.ReadFile(filepath.Join(dir, "run", "master.pid"))
	if err != nil {
		return
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 1 {
		return
	}
	cmdline, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "cmdline"))
	if err != nil || !strings.Contains(string(cmdline), filepath.Join(dir, "dovecot.conf")) {
		return
	}
	_ = syscall.Kill(-pid, syscall.SIGKILL)
}
