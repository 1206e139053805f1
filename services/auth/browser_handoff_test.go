package auth

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/mailferry/mailferry/services/auth/internal/authtest"
	"github.com/mailferry/mailferry/shared/sourcecred"
	"github.com/mailferry/mailferry/shared/testenv/dovecottest"
)

// TestAUserWithoutASourcePasswordHandsItOverOnTheChangePage drives the
// change page in headless Chromium as a MailEnable user whose AUTH.TAB
// line had no usable password: the current password the page checks at
// the legacy server (a real Dovecot, as bob@company, his source login) is
// handed to the extractor sealed, and his mailbox's pass is queued once;
// the new provider takes the new password.
func TestAUserWithoutASourcePasswordHandsItOverOnTheChangePage(t *testing.T) {
	chromium := authtest.RequireChromium(t)
	const (
		email, login = "bob@example.com", "bob@company"
		legacyPw     = "Bob's-Legacy-7"
		newPw        = "Quiet-River-2027!"
	)
	legacy := dovecottest.StartT(t, dovecottest.Options{Users: map[string]string{login: legacyPw}})
	target := authtest.Dovecot(t, nil)
	dir := t.TempDir()
	boxes := filepath.Join(dir, "mailboxes.csv")
	if err := os.WriteFile(boxes, []byte("source_user,target_user,source_password_file\n"+login+","+email+",\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	keyText := sourcecred.NewKeyText()
	keyFile := filepath.Join(dir, "source-credential.key")
	if err := os.WriteFile(keyFile, []byte(keyText), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := authtest.Config(t, fmt.Sprintf("mailboxes: {file: %s}\n", boxes)+
		fmt.Sprintf("auth: {listen: 127.0.0.1:0, provider: dovecot, dovecot: {passwd_file: %s}, argon2: {time: 1, memory_kib: 1024},\n", authtest.PasswdPath(target))+
		fmt.Sprintf("  legacy_imap: {address: %s, tls: none}, source_credentials: {key_file: %s}}\n", legacy.Addr, keyFile))
	b := authtest.Broker(t, cfg)
	logs := authtest.NewLogSink(t)
	ctx := authtest.Context(t, 3*time.Minute)
	if _, err := Import(ctx, cfg, b, strings.NewReader("email,role,legacy_hash\n"+email+",email-only,\n")); err != nil {
		t.Fatal(err)
	}
	if _, err := Provision(ctx, cfg, b, logs.Logger()); err != nil {
		t.Fatal(err)
	}
	base := serveAuth(t, ctx, cfg, b, logs)
	pctx := browserContext(t, chromium)
	if err := chromedp.Do(pctx,
		chromedp.Navigate(base+"/password"),
		chromedp.WaitVisible(chromedp.ID("new_password")),
		fill(email, legacyPw, newPw, newPw),
		chromedp.WaitVisible(chromedp.ID("done")),
	); err != nil {
		t.Fatalf("change on the page: %v", err)
	}
	if got := text(t, pctx, "done"); !strings.Contains(got, "Your password has been changed.") {
		t.Fatalf("result %q", got)
	}

	kv, err := sourcecred.Bind(ctx, b.JS)
	if err != nil {
		t.Fatal(err)
	}
	key, err := sourcecred.ParseKey([]byte(keyText))
	if err != nil {
		t.Fatal(err)
	}
	if got, err := (&sourcecred.Store{KV: kv, Key: key}).Password(ctx, login); err != nil || got != legacyPw {
		t.Fatalf("the credential handed over for %s: %v (the proven password: %v)", login, err, got == legacyPw)
	}
	if jobs, queued := jobsOf(t, b, login); jobs != 1 || queued != 1 {
		t.Errorf("%s: %d jobs and %d mailbox.queued events, want one pass", login, jobs, queued)
	}
	if err := authtest.IMAPLogin(target.Addr, email, newPw); err != nil {
		t.Fatalf("IMAP login at the new provider with the new password: %v", err)
	}
	for _, secret := range []string{legacyPw, newPw} {
		if strings.Contains(logs.String(), secret) {
			t.Errorf("a password is in the service's log")
		}
	}
}
