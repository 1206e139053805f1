package migrate_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mailferry/mailferry/cmd/mailferry/migrate"
	"github.com/mailferry/mailferry/shared/testenv/corpus"
	"github.com/mailferry/mailferry/shared/testenv/dovecottest"
	"github.com/mailferry/mailferry/shared/testenv/e2etest"
)

func TestMigrateReproducesCorpusBetweenDovecotServersAndSecondRunAppendsNothing(t *testing.T) {
	p := e2etest.Start(t, 3, dovecottest.Options{})
	rng := rand.New(rand.NewPCG(7, 11))
	n := p.SeedCorpus(t, rng)
	var large []dovecottest.Message
	for _, mb := range []int{1, 10, 30} {
		large = append(large, dovecottest.Message{Body: e2etest.BigMessage(mb<<20, fmt.Sprintf("large-%dmb", mb)), Flags: []string{`\Seen`, "$Label1"}, Date: e2etest.RandomDate(rng)})
	}
	if err := p.Src.Seed(p.Users[0], "Large/Attachments", large); err != nil {
		t.Fatal(err)
	}
	_, cfg := p.Config(t, filepath.Join(p.Dir, "nats"))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	res, err := migrate.Run(ctx, cfg, e2etest.Logger(t), migrate.Options{})
	if err != nil {
		t.Fatal(err)
	}
	checkOnlyAlteredByTarget(t, res, alteredByDovecot(t))
	var appended int64
	total := 0
	for _, m := range res.Report.Mailboxes {
		total += m.Messages
	}
	for _, pr := range res.Progress {
		appended += pr.Appended
	}
	if want := n + len(large); total != want || appended != int64(want) {
		t.Fatalf("verified %d and appended %d messages, seeded %d", total, appended, want)
	}

	again, err := migrate.Run(ctx, cfg, e2etest.Logger(t), migrate.Options{})
	if err != nil {
		t.Fatal(err)
	}
	checkOnlyAlteredByTarget(t, again, alteredByDovecot(t))
	for _, pr := range again.Progress {
		if pr.Appended != 0 {
			t.Errorf("second run appended %d messages to %s", pr.Appended, pr.Mailbox)
		}
	}
}

// alteredByDovecot returns the SHA-256 of every corpus message a Dovecot
// target cannot store as sent: it saves "\r\r\n" as "\r\n".
func alteredByDovecot(t *testing.T) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, f := range corpus.FilesT(t) {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(b, []byte("\r\r\n")) {
			sum := sha256.Sum256(b)
			out[hex.EncodeToString(sum[:])] = filepath.Base(f)
		}
	}
	return out
}

// checkOnlyAlteredByTarget fails unless every mailbox was loaded and the
// only differences are the messages the target is known to alter, each
// reported by name as altered.
func checkOnlyAlteredByTarget(t *testing.T, res *migrate.Result, altered map[string]string) {
	t.Helper()
	for _, p := range res.Progress {
		if p.Phase != migrate.PhaseLoaded {
			t.Errorf("mailbox %s ended %s: %s", p.Mailbox, p.Phase, p.LastError)
		}
	}
	seen := map[string]bool{}
	for _, m := range res.Report.Mailboxes {
		if m.Error != "" {
			t.Errorf("verify %s: %s", m.Source, m.Error)
		}
		for _, f := range m.Folders {
			for _, d := range f.Differences {
				if d.Kind == "altered" && altered[d.SHA256] != "" {
					seen[d.SHA256] = true
					continue
				}
				t.Errorf("%s folder %q: unexpected difference %+v", m.Source, f.Target, d)
			}
		}
	}
	for h, name := range altered {
		if !seen[h] {
			t.Errorf("%s (stored altered by Dovecot) was not reported as altered", name)
		}
	}
	if t.Failed() {
		var b strings.Builder
		res.Report.WriteText(&b)
		t.Logf("report:\n%s", b.String())
	}
}
