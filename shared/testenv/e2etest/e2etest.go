// Package e2etest sets up end-to-end migrations against real Dovecot
// servers for tests: a source and a target with master users, a
// configuration pointing mailferry at them, seeded mail.
package e2etest

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/mailferry/mailferry/shared/config"
	"github.com/mailferry/mailferry/shared/mailgen"
	"github.com/mailferry/mailferry/shared/testenv/corpus"
	"github.com/mailferry/mailferry/shared/testenv/dovecottest"
)

// MasterPassword is the master users' password on both servers.
const MasterPassword = "master-secret-Pw1!"

// Folders the corpus is spread over: nested, non-ASCII, a dotted name
// (which a '.'-separated target must not split) and special-use names.
var Folders = []string{"INBOX", "Archive/2010", "Archive/2010/Q1", "Entwürfe", "Projekte/v1.2", "日本語/メール", "Sent Items", "Drafts", "Junk E-mail"}

// Peers is a source Dovecot ('/' separator) and a target Dovecot ('.'),
// both with the master user "admin".
type Peers struct {
	Src, Tgt *dovecottest.Server
	Dir      string
	Users    []string
}

// Start starts the two servers with n users on each.
func Start(t *testing.T, n int, target dovecottest.Options) *Peers {
	t.Helper()
	return StartWithSource(t, n, dovecottest.Options{}, target)
}

// StartWithSource is Start with the source Dovecot's options too (its
// master user, users and passwords are set here, its separator unless
// given; ExtraConfig makes it look like another server: its capabilities,
// its mechanisms). The target's separator is '.' unless given.
func StartWithSource(t *testing.T, n int, source, target dovecottest.Options) *Peers {
	t.Helper()
	p := &Peers{Dir: t.TempDir()}
	accounts := map[string]string{}
	for i := range n {
		u := fmt.Sprintf("user%d@old.example", i+1)
		p.Users = append(p.Users, u)
		accounts[u] = fmt.Sprintf("pw-%d", i)
	}
	if source.Separator == 0 {
		source.Separator = '/'
	}
	source.MasterUser, source.MasterPassword = "admin", MasterPassword
	source.Users, source.PlainPasswords = accounts, true
	p.Src = dovecottest.StartT(t, source)
	if target.Separator == 0 {
		target.Separator = '.'
	}
	target.MasterUser, target.MasterPassword = "admin", MasterPassword
	target.Users, target.PlainPasswords, target.AutoCreateSpecial = accounts, true, true
	p.Tgt = dovecottest.StartT(t, target)
	return p
}

// Config writes a configuration for the peers (NATS data in natsDir) and
// returns its path and the loaded configuration.
func (p *Peers) Config(t *testing.T, natsDir string) (string, *config.Config) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(p.Dir, "master.pw"), []byte(MasterPassword+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var csv strings.Builder
	csv.WriteString("source_user,target_user\n")
	for _, u := range p.Users {
		fmt.Fprintf(&csv, "%s,%s\n", u, u)
	}
	if err := os.WriteFile(filepath.Join(p.Dir, "mailboxes.csv"), []byte(csv.String()), 0o600); err != nil {
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
  command_timeout: 20s
target:
  address: %s
  tls: none
  auth: master
  master_user: admin
  master_password_file: master.pw
  command_timeout: 20s
mailboxes:
  file: mailboxes.csv
log:
  level: warn
`, natsDir, p.Src.Addr, p.Tgt.Addr)
	path := filepath.Join(p.Dir, "mailferry.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	return path, cfg
}

// SeedCorpus spreads the shared corpus over the users and Folders with
// random flags, keywords and dates, and subscribes the folders; it returns
// how many messages it wrote.
func (p *Peers) SeedCorpus(t *testing.T, rng *rand.Rand) int {
	t.Helper()
	files := corpus.FilesT(t)
	batches := map[[2]string][]dovecottest.Message{}
	for i, f := range files {
		body, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		key := [2]string{p.Users[i%len(p.Users)], Folders[rng.IntN(len(Folders))]}
		batches[key] = append(batches[key], dovecottest.Message{Body: body, Flags: mailgen.Flags(rng, key[1]), Date: mailgen.Date(rng)})
	}
	for key, msgs := range batches {
		if err := p.Src.Seed(key[0], key[1], msgs); err != nil {
			t.Fatalf("seed %s %q: %v", key[0], key[1], err)
		}
		if err := p.Src.Subscribe(key[0], key[1]); err != nil {
			t.Fatal(err)
		}
	}
	return len(files)
}

// smallSizes are the sizes of Generated messages: about 1 KiB.
var smallSizes = mailgen.Sizes{Median: 1 << 10, Sigma: 0.5, Min: 700, Max: 4 << 10}

// Generated returns n small generated messages (CRLF, unique: the
// Message-ID holds tag, the index and a random part; the subject tag and
// the index).
func Generated(rng *rand.Rand, n int, tag string) []dovecottest.Message {
	out := make([]dovecottest.Message, 0, n)
	for i := range n {
		date := mailgen.Date(rng)
		body := mailgen.Message(rng, mailgen.Spec{To: "user@old.example", Size: smallSizes.Draw(rng), Date: date,
			Subject: fmt.Sprintf("%s %d", tag, i), ID: fmt.Sprintf("%s.%d", tag, i)})
		out = append(out, dovecottest.Message{Body: body, Flags: mailgen.Flags(rng, ""), Date: date})
	}
	return out
}

// RandomDate is mailgen.Date, for tests that seed messages of their own.
func RandomDate(rng *rand.Rand) time.Time { return mailgen.Date(rng) }

// BigMessage is mailgen.Big: about size bytes, the same for one tag.
func BigMessage(size int, tag string) []byte { return mailgen.Big(size, tag) }

// Logger logs warnings and errors into the test's output.
func Logger(t *testing.T) zerolog.Logger {
	return zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel)
}

// ConfigOwnPasswords is Config with the source logged in to as each user
// with their own password (source.auth user, a 0600 password file per
// mailbox in the mailboxes file), as from MailEnable's AUTH.TAB: no
// master login. passwords maps a user to the password written for it;
// a user it leaves out gets the one the source was started with.
func (p *Peers) ConfigOwnPasswords(t *testing.T, natsDir string, passwords map[string]string) (string, *config.Config) {
	t.Helper()
	path, _ := p.Config(t, natsDir)
	var csv strings.Builder
	csv.WriteString("source_user,target_user,source_password_file\n")
	for i, u := range p.Users {
		pw, ok := passwords[u]
		if !ok {
			pw = fmt.Sprintf("pw-%d", i)
		}
		f := filepath.Join(p.Dir, fmt.Sprintf("source-%d.pw", i))
		if err := os.WriteFile(f, []byte(pw+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&csv, "%s,%s,%s\n", u, u, f)
	}
	if err := os.WriteFile(filepath.Join(p.Dir, "mailboxes.csv"), []byte(csv.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	master := "source:\n  address: " + p.Src.Addr + "\n  tls: none\n  auth: master\n  master_user: admin\n  master_password_file: master.pw\n"
	text := strings.Replace(string(raw), master, "source:\n  address: "+p.Src.Addr+"\n  tls: none\n  auth: user\n", 1)
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Source.Auth != config.AuthUser {
		t.Fatalf("e2etest: the source still has auth %q", cfg.Source.Auth)
	}
	return path, cfg
}
