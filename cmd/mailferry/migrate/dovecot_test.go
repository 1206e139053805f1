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

	"github.com/rs/zerolog"

	"github.com/mailferry/mailferry/cmd/mailferry/migrate"
	"github.com/mailferry/mailferry/shared/config"
	"github.com/mailferry/mailferry/shared/corpus"
	"github.com/mailferry/mailferry/shared/dovecottest"
)

const masterPassword = "master-secret-Pw1!"

// Folders the corpus is spread over: nested, non-ASCII, a dotted name
// (which the '.'-separated target must not split) and special-use names.
var corpusFolders = []string{"INBOX", "Archive/2010", "Archive/2010/Q1", "Entwürfe", "Projekte/v1.2", "日本語/メール", "Sent Items", "Drafts", "Junk E-mail"}

var testKeywords = []string{"$Label1", "$Forwarded", "Work", "NonJunk"}

type peers struct {
	src, tgt *dovecottest.Server
	dir      string
	users    []string
}

func startPeers(t *testing.T, users int) *peers {
	t.Helper()
	p := &peers{dir: t.TempDir()}
	accounts := map[string]string{}
	for i := range users {
		u := fmt.Sprintf("user%d@old.example", i+1)
		p.users = append(p.users, u)
		accounts[u] = fmt.Sprintf("pw-%d", i)
	}
	p.src = dovecottest.StartT(t, dovecottest.Options{Separator: '/', MasterUser: "admin", MasterPassword: masterPassword, Users: accounts, PlainPasswords: true})
	p.tgt = dovecottest.StartT(t, dovecottest.Options{Separator: '.', MasterUser: "admin", MasterPassword: masterPassword, Users: accounts, PlainPasswords: true, AutoCreateSpecial: true})
	return p
}

// config writes a configuration for the peers and returns it loaded.
func (p *peers) config(t *testing.T, natsDir string) *config.Config {
	t.Helper()
	pw := filepath.Join(p.dir, "master.pw")
	if err := os.WriteFile(pw, []byte(masterPassword+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var csv strings.Builder
	csv.WriteString("source_user,target_user\n")
	for _, u := range p.users {
		fmt.Fprintf(&csv, "%s,%s\n", u, u)
	}
	if err := os.WriteFile(filepath.Join(p.dir, "mailboxes.csv"), []byte(csv.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	yaml := fmt.Sprintf(`nats:
  data_dir: %s
source:
  address: %s
  tls: none
  auth: master
  master_user: admin
  master_password_file: master.pw
target:
  address: %s
  tls: none
  auth: master
  master_user: admin
  master_password_file: master.pw
mailboxes:
  file: mailboxes.csv
log:
  level: warn
`, natsDir, p.src.Addr, p.tgt.Addr)
	path := filepath.Join(p.dir, "mailferry.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// seedCorpus spreads the shared corpus over the users and folders with
// random flags, keywords and dates; it returns how many messages it wrote.
func (p *peers) seedCorpus(t *testing.T, rng *rand.Rand) int {
	t.Helper()
	files := corpus.FilesT(t)
	batches := map[[2]string][]dovecottest.Message{}
	for i, f := range files {
		body, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		key := [2]string{p.users[i%len(p.users)], corpusFolders[rng.IntN(len(corpusFolders))]}
		batches[key] = append(batches[key], dovecottest.Message{Body: body, Flags: randomFlags(rng), Date: randomDate(rng)})
	}
	for key, msgs := range batches {
		if err := p.src.Seed(key[0], key[1], msgs); err != nil {
			t.Fatalf("seed %s %q: %v", key[0], key[1], err)
		}
		if err := p.src.Subscribe(key[0], key[1]); err != nil {
			t.Fatal(err)
		}
	}
	return len(files)
}

func randomFlags(rng *rand.Rand) []string {
	var out []string
	for _, f := range []string{`\Seen`, `\Answered`, `\Flagged`, `\Draft`, `\Deleted`} {
		if rng.IntN(3) == 0 {
			out = append(out, f)
		}
	}
	if rng.IntN(3) == 0 {
		out = append(out, testKeywords[rng.IntN(len(testKeywords))])
	}
	return out
}

func randomDate(rng *rand.Rand) time.Time {
	return time.Unix(631152000+rng.Int64N(1_100_000_000), 0)
}

// bigMessage makes a message of about size bytes with CRLF lines.
func bigMessage(size int, tag string) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "From: big@old.example\r\nTo: user@old.example\r\nSubject: %s\r\nMessage-ID: <%s@old.example>\r\n"+
		"MIME-Version: 1.0\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n", tag, tag)
	line := []byte("QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWZnaGlqa2xtbm9wcXJzdHV2d3h5ejAxMjM0\r\n")
	for b.Len() < size {
		b.Write(line)
	}
	return b.Bytes()
}

func testLogger(t *testing.T) zerolog.Logger {
	return zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel)
}

func TestMigrateReproducesCorpusBetweenDovecotServersAndSecondRunAppendsNothing(t *testing.T) {
	p := startPeers(t, 3)
	rng := rand.New(rand.NewPCG(7, 11))
	n := p.seedCorpus(t, rng)
	var large []dovecottest.Message
	for _, mb := range []int{1, 10, 30} {
		large = append(large, dovecottest.Message{Body: bigMessage(mb<<20, fmt.Sprintf("large-%dmb", mb)), Flags: []string{`\Seen`, "$Label1"}, Date: randomDate(rng)})
	}
	if err := p.src.Seed(p.users[0], "Large/Attachments", large); err != nil {
		t.Fatal(err)
	}
	cfg := p.config(t, filepath.Join(p.dir, "nats"))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	res, err := migrate.Run(ctx, cfg, testLogger(t), migrate.Options{})
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

	again, err := migrate.Run(ctx, cfg, testLogger(t), migrate.Options{})
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
