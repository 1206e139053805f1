package migrate_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/mailferry/mailferry/shared/testenv/dovecottest"
	"github.com/mailferry/mailferry/shared/testenv/e2etest"
)

// mailEnable4 is what MailEnable 4.x advertises (seen in the wild): no
// NAMESPACE, LITERAL+, LIST-EXTENDED, ENABLE, UNSELECT, MOVE, CONDSTORE,
// SPECIAL-USE, and no AUTH=PLAIN.
const mailEnable4 = "IMAP4rev1 IMAP4 CHILDREN IDLE AUTH=LOGIN AUTH=CRAM-MD5"

// TestAMigrationFromALegacyServerUsesOnlyWhatItAdvertises migrates from a
// Dovecot that advertises MailEnable 4.x's capabilities, each mailbox
// with its own password over a link without TLS, and reads the server's
// raw log of every session: the logins were CRAM-MD5, and every command
// after them (the extractor's and verify's) is IMAP4rev1 or advertised.
func TestAMigrationFromALegacyServerUsesOnlyWhatItAdvertises(t *testing.T) {
	// Dovecot's mail processes (another user) write the raw logs: a
	// directory they can reach (t.TempDir is 0700 all the way).
	raw, err := os.MkdirTemp("", "mailferry-rawlog-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(raw) })
	p := e2etest.StartWithSource(t, 2, dovecottest.Options{
		ExtraConfig: fmt.Sprintf("imap_capability = %s\nauth_mechanisms = plain login cram-md5\nprotocol imap {\n  rawlog_dir = %s/%%u\n}\n", mailEnable4, raw),
	}, dovecottest.Options{})
	rng := rand.New(rand.NewPCG(4, 15))
	for _, u := range p.Users {
		for _, f := range []string{"INBOX", "Sent Items", "Archive/2019"} {
			if err := p.Src.Seed(u, f, e2etest.Generated(rng, 5, u+f)); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.MkdirAll(filepath.Join(raw, u), 0o777); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(filepath.Join(raw, u), 0o777); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(raw, 0o755); err != nil {
		t.Fatal(err)
	}
	_, cfg := p.ConfigOwnPasswords(t, filepath.Join(p.Dir, "nats"), nil)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	migrateVerified(ctx, t, cfg)

	// Every login was CRAM-MD5: the password never crossed the link.
	log, err := os.ReadFile(p.Src.LogPath)
	if err != nil {
		t.Fatal(err)
	}
	logins := regexp.MustCompile(`imap-login: Info: Login: user=<[^>]+>, method=(\S+),`).FindAllStringSubmatch(string(log), -1)
	if len(logins) == 0 {
		t.Fatalf("no login in the source's log:\n%s", p.Src.LogTail(20))
	}
	for _, m := range logins {
		if m[1] != "CRAM-MD5" {
			t.Errorf("a login with %s, want CRAM-MD5", m[1])
		}
	}

	// The commands after the logins, from the server's raw logs.
	allowed := map[string]bool{"CAPABILITY": true, "NOOP": true, "LOGOUT": true, "LIST": true, "LSUB": true, "SELECT": true,
		"EXAMINE": true, "CLOSE": true, "FETCH": true, "UID FETCH": true, "IDLE": true, "DONE": true, "CHECK": true, "STATUS": false}
	seen := map[string]int{}
	files, _ := filepath.Glob(filepath.Join(raw, "*", "*.in"))
	if len(files) == 0 {
		t.Fatalf("no raw log in %s", raw)
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(b), "\n") {
			line = strings.TrimRight(line, "\r")
			fields := strings.Fields(line)
			if len(fields) > 0 && strings.Trim(fields[0], "0123456789.") == "" {
				fields = fields[1:] // the raw log's timestamp
			}
			if len(fields) < 2 {
				continue
			}
			cmd := strings.ToUpper(fields[1])
			if cmd == "UID" && len(fields) > 2 {
				cmd += " " + strings.ToUpper(fields[2])
			}
			if strings.ToUpper(fields[0]) == "DONE" {
				cmd = "DONE"
			}
			seen[cmd]++
			if !allowed[cmd] {
				t.Errorf("%s sent %q to a server that does not advertise it (%s)", filepath.Base(f), line, mailEnable4)
			}
			if strings.Contains(line, "+}") {
				t.Errorf("%s sent a LITERAL+ literal: %q", filepath.Base(f), line)
			}
		}
	}
	var names []string
	for c, n := range seen {
		names = append(names, fmt.Sprintf("%s×%d", c, n))
	}
	sort.Strings(names)
	t.Logf("commands after login: %s", strings.Join(names, " "))
}
