package chaos

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/mailferry/mailferry/shared/dovecottest"
)

// buildMailferry builds the binary the chaos processes run.
func buildMailferry(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "mailferry")
	out, err := exec.Command("go", "build", "-o", bin, "github.com/mailferry/mailferry/cmd/mailferry").CombinedOutput()
	if err != nil {
		t.Fatalf("build mailferry: %v\n%s", err, out)
	}
	return bin
}

func TestKillingEveryProcessRepeatedlyLosesAndDuplicatesNothing(t *testing.T) {
	dovecottest.Require(t)
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("MAILFERRY_CHAOS_SEED"); s != "" {
		seed, _ = strconv.ParseUint(s, 10, 64)
	}
	t.Logf("seed %d (set MAILFERRY_CHAOS_SEED to repeat)", seed)
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
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	var out bytes.Buffer
	rep, err := Run(ctx, Options{Bin: buildMailferry(t), Work: work, Seed: seed, Kills: 20, Mailboxes: 3, Messages: 400, Out: &out})
	t.Log(out.String())
	if err != nil {
		for _, name := range []string{"nats", "extractor", "loader"} {
			if b, rerr := os.ReadFile(filepath.Join(work, name+".log")); rerr == nil && len(b) > 4000 {
				t.Logf("tail of %s.log:\n%s", name, b[len(b)-4000:])
			}
		}
		t.Fatal(err)
	}
	kills := 0
	for _, n := range rep.Kills {
		kills += n
	}
	if kills < 20 || rep.Kills["nats"] == 0 || rep.Kills["extractor"] == 0 || rep.Kills["loader"] == 0 {
		t.Errorf("kills = %v, want at least 20 over all three processes", rep.Kills)
	}
	if !rep.OK() {
		t.Errorf("after %d kills: %d problems, first: %v", kills, len(rep.Problems), rep.Problems[:min(10, len(rep.Problems))])
	}
}
