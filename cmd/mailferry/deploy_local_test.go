package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mailferry/mailferry/shared/testenv/proc"
	"github.com/mailferry/mailferry/shared/testenv/syncbuf"
)

// localCluster is deploy/local-cluster.sh.
const localCluster = "../../deploy/local-cluster.sh"

// localClusterPorts is how many ports from its base port the script uses.
const localClusterPorts = 60

// TestLocalClusterScriptStartsEveryDaemonReadyAndStopsThemAll runs
// deploy/local-cluster.sh as README's walkthrough does, in a temporary
// working directory on free loopback ports: the three nodes and every
// daemon come up, each /readyz answers 200 behind basic auth, `status`
// works as the operator against the cluster, no secret is printed, and
// `stop` leaves no process of it running.
func TestLocalClusterScriptStartsEveryDaemonReadyAndStopsThemAll(t *testing.T) {
	proc.Require(t, proc.Missing("",
		proc.Need{Bin: "bash", Package: "bash"}, proc.Need{Bin: "setsid", Package: "util-linux"},
		proc.Need{Bin: "timeout", Package: "coreutils"}, proc.Need{Bin: "base64", Package: "coreutils"},
		proc.Need{Bin: "realpath", Package: "coreutils"}, proc.Need{Bin: "awk", Package: "mawk"}))
	bin, err := mailferryBinary()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir := filepath.Join(t.TempDir(), "local cluster") // a space: paths are quoted
	base := freePortRange(t, localClusterPorts)
	script := func(ctx context.Context, verb string) (string, error) {
		cmd := exec.CommandContext(ctx, localCluster, verb)
		cmd.Env = append(os.Environ(), "MAILFERRY_LOCAL_DIR="+dir, "MAILFERRY_BIN="+bin,
			"MAILFERRY_LOCAL_BASE_PORT="+strconv.Itoa(base), "MAILFERRY_LOCAL_GRACE=20", "MAILFERRY_LOCAL_TIMEOUT=40")
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			out, err := script(context.Background(), "stop")
			t.Logf("stop (cleanup): %v\n%s", err, out)
		}
	})

	start := time.Now()
	out, err := script(ctx, "start")
	if err != nil {
		t.Fatalf("local-cluster.sh start: %v\n%s\n%s", err, out, localClusterLogs(dir))
	}
	t.Logf("started in %s", time.Since(start).Round(time.Second))
	if again, err := script(ctx, "start"); err != nil || !strings.Contains(again, "already running") {
		t.Errorf("start while running: %v\n%s", err, again)
	}

	metricsPassword := strings.TrimSpace(readFile(t, filepath.Join(dir, "etc", "metrics.password")))
	dashPassword := strings.TrimSpace(readFile(t, filepath.Join(dir, "etc", "dashboard.password")))
	probes := []struct{ name, url, user, password string }{
		{"nats1", fmt.Sprintf("http://127.0.0.1:%d/healthz", base+20), "", ""},
		{"nats2", fmt.Sprintf("http://127.0.0.1:%d/healthz", base+21), "", ""},
		{"nats3", fmt.Sprintf("http://127.0.0.1:%d/healthz", base+22), "", ""},
		{"extractor", fmt.Sprintf("http://127.0.0.1:%d/readyz", base+30), "prometheus", metricsPassword},
		{"loader", fmt.Sprintf("http://127.0.0.1:%d/readyz", base+31), "prometheus", metricsPassword},
		{"dnsctl", fmt.Sprintf("http://127.0.0.1:%d/readyz", base+32), "prometheus", metricsPassword},
		{"auth", fmt.Sprintf("http://127.0.0.1:%d/readyz", base+33), "prometheus", metricsPassword},
		{"delta", fmt.Sprintf("http://127.0.0.1:%d/readyz", base+34), "prometheus", metricsPassword},
		{"cutover", fmt.Sprintf("http://127.0.0.1:%d/readyz", base+35), "prometheus", metricsPassword},
		{"dashboard", fmt.Sprintf("http://127.0.0.1:%d/state.json", base+36), "ops", dashPassword},
	}
	// Nothing answers for the DNS primary and the legacy IMAP server the
	// files point at: dnsctl and auth are up but not ready, and say why.
	peerless := map[string]string{"dnsctl": "dns server", "auth": "legacy imap"}
	for _, p := range probes {
		if peer, ok := peerless[p.name]; ok {
			if err := waitNotReadyFor(ctx, p.url, p.user, p.password, peer); err != nil {
				t.Errorf("%s: %v", p.name, err)
			}
		} else if err := waitStatus(ctx, p.url, p.user, p.password, http.StatusOK); err != nil {
			t.Errorf("%s: %v", p.name, err)
		}
		if p.user != "" {
			// Behind basic auth: without it, 401.
			if err := waitStatus(ctx, p.url, "", "", http.StatusUnauthorized); err != nil {
				t.Errorf("%s without a password: %v", p.name, err)
			}
		}
	}
	if t.Failed() {
		t.Fatalf("not every process is ready\n%s", localClusterLogs(dir))
	}

	// The operator's CLI against the cluster, with the file the script made.
	var status bytes.Buffer
	if err := run(ctx, "status", []string{"-c", filepath.Join(dir, "etc", "mailferry.yaml")}, &status, &syncbuf.Buffer{}); err != nil {
		t.Fatalf("status: %v\n%s", err, status.String())
	}
	if !strings.Contains(status.String(), "alice@example.com") {
		t.Errorf("status does not list deploy/mailboxes.csv's mailboxes:\n%s", status.String())
	}

	st, err := script(ctx, "status")
	if err != nil || strings.Count(st, " running ") != 10 {
		t.Errorf("local-cluster.sh status: %v\n%s", err, st)
	}

	pids := map[string]int{}
	runDir := filepath.Join(dir, "run")
	entries, err := os.ReadDir(runDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(strings.TrimSpace(readFile(t, filepath.Join(runDir, e.Name()))))
		if err != nil {
			t.Fatalf("%s: %v", e.Name(), err)
		}
		pids[strings.TrimSuffix(e.Name(), ".pid")] = pid
	}
	if len(pids) != 10 {
		t.Errorf("pid files: %v, want 3 nodes and 7 daemons", pids)
	}

	stopOut, err := script(ctx, "stop")
	stopped = true
	if err != nil {
		t.Fatalf("local-cluster.sh stop: %v\n%s", err, stopOut)
	}
	for name, pid := range pids {
		if processRuns(pid) {
			t.Errorf("%s (pid %d) still runs after stop", name, pid)
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	if again, err := script(ctx, "stop"); err != nil || !strings.Contains(again, "nothing runs") {
		t.Errorf("stop when nothing runs: %v\n%s", err, again)
	}

	// No secret in what the script printed; every secret file 0600.
	printed := out + st + stopOut
	secrets, _ := filepath.Glob(filepath.Join(dir, "etc", "*.password"))
	more, _ := filepath.Glob(filepath.Join(dir, "nats", "secrets", "*"))
	for _, f := range append(secrets, more...) {
		fi, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v, want 0600", f, fi.Mode().Perm())
		}
		if strings.HasSuffix(f, ".password") {
			if pw := strings.TrimSpace(readFile(t, f)); strings.Contains(printed, pw) {
				t.Errorf("the script printed the password of %s", filepath.Base(f))
			}
		}
	}
}

// freePortRange is the first of n consecutive loopback ports that are all
// free now, below Linux's default ephemeral range (32768-60999): the
// kernel picks the source port of every outgoing connection there (the
// nodes' routes, the daemons' broker connections), and one landed on a
// daemon's port before the daemon listened (a CI simulation under load).
func freePortRange(t *testing.T, n int) int {
	t.Helper()
	for range 50 {
		base := 20000 + rand.IntN(32768-20000-n)
		var held []net.Listener
		ok := true
		for p := base; p < base+n; p++ {
			l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
			if err != nil {
				ok = false
				break
			}
			held = append(held, l)
		}
		for _, l := range held {
			l.Close()
		}
		if ok {
			return base
		}
	}
	t.Fatalf("no %d consecutive free loopback ports", n)
	return 0
}

// waitStatus waits until GET url (with basic auth when user is set)
// answers want.
func waitStatus(ctx context.Context, url, user, password string, want int) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var last error
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		if user != "" {
			req.SetBasicAuth(user, password)
		}
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == want {
				return nil
			}
			err = fmt.Errorf("%s: %s, want %d", url, resp.Status, want)
		}
		last = err
		select {
		case <-ctx.Done():
			return errors.Join(last, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// waitNotReadyFor waits until url (a /readyz) answers 503 naming peer
// and not the broker: the daemon is connected, its peer is not there.
func waitNotReadyFor(ctx context.Context, url, user, password, peer string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var last string
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		req.SetBasicAuth(user, password)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			last = fmt.Sprintf("%s %s", resp.Status, body)
			if resp.StatusCode == http.StatusServiceUnavailable && strings.Contains(string(body), peer) && !strings.Contains(string(body), "broker") {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: last %q, want 503 naming %s and not the broker", url, last, peer)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// processRuns reports whether pid is a live process (a zombie is not).
func processRuns(pid int) bool {
	if err := syscall.Kill(pid, 0); err != nil {
		return false
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// pid (comm) STATE ...
	s := string(stat)
	if i := strings.LastIndexByte(s, ')'); i >= 0 && i+2 < len(s) {
		return s[i+2] != 'Z'
	}
	return true
}

// localClusterLogs is the end of every log the script's processes wrote.
func localClusterLogs(dir string) string {
	logs, _ := filepath.Glob(filepath.Join(dir, "log", "*.log"))
	var b strings.Builder
	for _, f := range logs {
		text, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		fmt.Fprintf(&b, "== %s\n%s\n", filepath.Base(f), tail(string(text), 8))
	}
	return b.String()
}
