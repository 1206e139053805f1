package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mailferry/mailferry/shared/testenv/dovecottest"
	"github.com/mailferry/mailferry/shared/testenv/e2etest"
)

// TestMailEnableAccountsImportedFromAuthTabMigrateWithTheirOwnPasswords
// imports a MailEnable AUTH.TAB (post office "company" is the mail
// domain example.com), then migrates from a source whose logins are
// mailbox@postoffice, each with the password AUTH.TAB holds (no master
// login): alice's mailbox moves; bob, whose line has no password, is
// listed as needing sign-in and fails by name; an AUTH.TAB others may read
// is refused, and importing again changes nothing.
func TestMailEnableAccountsImportedFromAuthTabMigrateWithTheirOwnPasswords(t *testing.T) {
	dir := t.TempDir()
	src := dovecottest.StartT(t, dovecottest.Options{Separator: '/', PlainPasswords: true,
		Users: map[string]string{"alice@company": "Alice's pw 1", "bob@company": "bob-pw"}})
	tgt := dovecottest.StartT(t, dovecottest.Options{Separator: '.', PlainPasswords: true, AutoCreateSpecial: true,
		MasterUser: "admin", MasterPassword: e2etest.MasterPassword, Users: map[string]string{"alice@example.com": "x", "bob@example.com": "y"}})
	rng := rand.New(rand.NewPCG(15, 1))
	msgs := e2etest.Generated(rng, 6, "alice")
	if err := src.Seed("alice@company", "INBOX", msgs); err != nil {
		t.Fatal(err)
	}
	write := func(name, text string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	authTab := write("AUTH.TAB", "alice\tAlice's pw 1\t\tcompany\r\nbob\t\t\tcompany\r\n", 0o600)
	offices := write("postoffices.txt", "company example.com\n", 0o644)
	write("master.pw", e2etest.MasterPassword+"\n", 0o600)
	conf := write("mailferry.yaml", fmt.Sprintf(`nats: {data_dir: %s}
source: {address: %s, tls: none, auth: user, command_timeout: 20s}
target: {address: %s, tls: none, auth: master, master_user: admin, master_password_file: master.pw, command_timeout: 20s}
mailboxes: {file: mailboxes.csv}
auth: {provider: dovecot, dovecot: {passwd_file: %s}}
log: {level: warn}
`, filepath.Join(dir, "nats"), src.Addr, tgt.Addr, filepath.Join(dir, "passwd")), 0o600)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	out, err := cli(t, ctx, "users", "import-mailenable", "-c", conf, "-auth-tab", authTab, "-postoffice-map", offices)
	if err != nil {
		t.Fatalf("import: %v\n%s", err, out)
	}
	for _, want := range []string{"2 mailboxes written", "1 with their source password", "2 created", "needs sign-in  bob@example.com"} {
		if !strings.Contains(out, want) {
			t.Errorf("import said %q, want %q", out, want)
		}
	}
	if strings.Contains(out, "Alice's pw 1") {
		t.Errorf("the import printed a password")
	}
	boxes := readFile(t, filepath.Join(dir, "mailboxes.csv"))
	for _, want := range []string{"source_user,target_user,source_password_file", "alice@company,alice@example.com,source-passwords/", "bob@company,bob@example.com,\n"} {
		if !strings.Contains(boxes, want) {
			t.Errorf("mailboxes.csv lacks %q:\n%s", want, boxes)
		}
	}
	if strings.Contains(boxes, "Alice's pw 1") {
		t.Errorf("mailboxes.csv holds a password")
	}
	pws, _ := filepath.Glob(filepath.Join(dir, "source-passwords", "*.pw"))
	if len(pws) != 1 {
		t.Fatalf("password files %v, want alice's only", pws)
	}
	for _, p := range append(pws, filepath.Join(dir, "mailboxes.csv"), filepath.Join(dir, "source-passwords")) {
		st, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm()&0o077 != 0 {
			t.Errorf("%s has mode %v: others may read it", p, st.Mode().Perm())
		}
	}
	if got := readFile(t, pws[0]); got != "Alice's pw 1\n" {
		t.Errorf("alice's password file holds %d bytes, not her password", len(got))
	}
	users, err := cli(t, ctx, "users", "list", "-c", conf, "-json")
	if err != nil || !strings.Contains(users, `"email":"alice@example.com","role":"email-only","has_hash":true`) ||
		!strings.Contains(users, `"email":"bob@example.com","role":"email-only","has_hash":false`) {
		t.Errorf("users list: %v\n%s", err, users)
	}
	again, err := cli(t, ctx, "users", "import-mailenable", "-c", conf, "-auth-tab", authTab, "-postoffice-map", offices)
	if err != nil || !strings.Contains(again, "0 created, 0 updated, 2 unchanged") {
		t.Errorf("import again: %v\n%s", err, again)
	}
	// A password file AUTH.TAB no longer accounts for does not stay.
	stale := filepath.Join(dir, "source-passwords", "gone.pw")
	write(filepath.Join("source-passwords", "gone.pw"), "an old password\n", 0o600)
	if _, err := cli(t, ctx, "users", "import-mailenable", "-c", conf, "-auth-tab", authTab, "-postoffice-map", offices); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Errorf("a stale source password file is left: %v", err)
	}
	if pws, _ := filepath.Glob(filepath.Join(dir, "source-passwords", "*.pw")); len(pws) != 1 {
		t.Errorf("password files after importing again: %v, want alice's only", pws)
	}

	res, err := cli(t, ctx, "migrate", "-c", conf)
	if err == nil {
		t.Errorf("migrate succeeded with bob's password missing:\n%s", res)
	}
	if !strings.Contains(res, fmt.Sprintf("ok        alice@company -> alice@example.com: %d messages", len(msgs))) {
		t.Errorf("alice's mailbox not moved:\n%s", res)
	}
	if !strings.Contains(res, "WAITING    bob@company: no source password yet: copied once its user signs in") {
		t.Errorf("bob's mailbox not reported by name as waiting for its user:\n%s", res)
	}

	// An import refused changes nothing: neither one whose post office is
	// no mail domain (no map given) nor an empty, truncated copy.
	before := readFile(t, filepath.Join(dir, "mailboxes.csv"))
	empty := write("EMPTY.TAB", "\r\n", 0o600)
	for _, args := range [][]string{{"-auth-tab", authTab}, {"-auth-tab", empty, "-postoffice-map", offices}} {
		_, err := cli(t, ctx, append([]string{"users", "import-mailenable", "-c", conf}, args...)...)
		if err == nil || !strings.Contains(err.Error(), "-postoffice-map") && !strings.Contains(err.Error(), "lists no mailbox") {
			t.Errorf("import %v: %v, want it refused", args, err)
		}
		if pws, _ := filepath.Glob(filepath.Join(dir, "source-passwords", "*.pw")); len(pws) != 1 || readFile(t, filepath.Join(dir, "mailboxes.csv")) != before {
			t.Errorf("a refused import %v changed the files: password files %v", args, pws)
		}
	}

	if err := os.Chmod(authTab, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := cli(t, ctx, "users", "import-mailenable", "-c", conf, "-auth-tab", authTab); err == nil || !strings.Contains(err.Error(), "0644") {
		t.Errorf("an AUTH.TAB others may read: %v, want it refused naming its mode", err)
	}
}
