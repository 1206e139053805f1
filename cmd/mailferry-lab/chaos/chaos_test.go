package chaos

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailferry/mailferry/shared/testenv/dovecottest"
)

// buildMailferry builds the binary the chaos processes run. It is built
// without -race even under `go test -race`: the race detector makes every
// child several times slower and the test would outgrow its two minutes;
// the packages it runs have -race tests of their own.
func buildMailferry(t *testing.T) string {
	t.Helper()
	if bin := os.Getenv("MAILFERRY_CHAOS_BIN"); bin != "" {
		return bin
	}
	bin := filepath.Join(t.TempDir(), "mailferry")
	out, err := exec.Command("go", "build", "-o", bin, "github.com/mailferry/mailferry/cmd/mailferry").CombinedOutput()
	if err != nil {
		t.Fatalf("build mailferry: %v\n%s", err, out)
	}
	return bin
}

// lineLog passes each complete line to t.Log as it comes.
type lineLog struct {
	t   *testing.T
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *lineLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf.Write(p)
	for {
		line, err := l.buf.ReadString('\n')
		if err != nil {
			l.buf.WriteString(line)
			return len(p), nil
		}
		l.t.Log(strings.TrimSuffix(line, "\n"))
	}
}

// The reported failure, in small: `mailferry migrate` (embedded broker) is
// killed with its process group at least six times in a row, 1-5 s into
// each run, after per-service kills and attached migrates; then one more
// migrate must finish and the target must match the source.
func TestKillingWholeMigrateAndEveryServiceRepeatedlyLosesAndDuplicatesNothing(t *testing.T) {
	dovecottest.Require(t)
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("MAILFERRY_CHAOS_SEED"); s != "" {
		seed, _ = strconv.ParseUint(s, 10, 64)
	}
	t.Logf("seed %d (set MAILFERRY_CHAOS_SEED to repeat, MAILFERRY_CHAOS_KEEP=1 to keep the work directory of a failed run)", seed)
	work, err := os.MkdirTemp("", "mailferry-chaos-")
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if t.Failed() && os.Getenv("MAILFERRY_CHAOS_KEEP") != "" {
			t.Logf("work dir kept: %s", work)
			return
		}
		os.RemoveAll(work)
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	const kills, whole = 16, 8
	rep, err := Run(ctx, Options{Bin: buildMailferry(t), Work: work, Seed: seed, Kills: kills, Whole: whole,
		Mailboxes: 3, Messages: 600, MaxSize: 25_000_000, SharedCorpus: true,
		LeaseTTL: 3 * time.Second, AckWait: 6 * time.Second, FinalTimeout: 75 * time.Second, Out: &lineLog{t: t}})
	if errors.Is(err, ErrHang) {
		logHang(t, rep.Hang, filepath.Join(work, "final-state.txt"))
	}
	if err != nil {
		for _, name := range []string{"nats", "extractor", "loader", "migrate", "migrate-attached", "final-migrate"} {
			if b, rerr := os.ReadFile(filepath.Join(work, name+".log")); rerr == nil && len(b) > 0 && !errors.Is(err, ErrHang) {
				t.Logf("tail of %s.log:\n%s", name, b[max(0, len(b)-3000):])
			}
		}
		t.Fatal(err)
	}
	if rep.KillCount() != kills || rep.WholeKills() < 6 || rep.Kills[KindNATS] == 0 || rep.Kills[KindExtract] == 0 || rep.Kills[KindLoad] == 0 {
		t.Errorf("kills = %v, want %d over migrate (at least 6), nats, extractor and loader", rep.Kills, kills)
	}
	if rep.FinalAppended == 0 {
		t.Errorf("the final migrate appended nothing; want the %d messages that arrived last", max(3, 600/200))
	}
	if !rep.OK() {
		t.Errorf("after %d kills: lost %d, duplicated %d, %d problems, first: %v", rep.KillCount(), rep.Lost, rep.Duplicated, len(rep.Problems), rep.Problems[:min(10, len(rep.Problems))])
	}
}

// logHang shows the broker's state and the goroutines of mailferry's own
// code from the dump of a hung migrate.
func logHang(t *testing.T, dump, state string) {
	t.Helper()
	if b, err := os.ReadFile(state); err == nil {
		t.Logf("%s:\n%s", state, b)
	}
	if b, err := os.ReadFile(dump); err == nil {
		t.Logf("the hung migrate (all goroutines in %s): %s", dump, Condense(string(b), 12000))
	}
}
