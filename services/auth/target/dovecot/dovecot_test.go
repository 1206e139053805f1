package dovecot

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailferry/mailferry/services/auth/internal/authtest"
	"github.com/mailferry/mailferry/services/auth/passhash"
)

var cheapArgon = passhash.Argon2Params{Time: 1, MemoryKiB: 64, Threads: 1}

func newFile(t *testing.T, content string) *PasswdFile {
	t.Helper()
	path := filepath.Join(t.TempDir(), "passwd")
	if content != "" {
		if err := os.WriteFile(path, []byte(content), 0o604); err != nil {
			t.Fatal(err)
		}
	}
	return &PasswdFile{Path: path, Scheme: passhash.SHA512Crypt, Argon2: cheapArgon}
}

func read(t *testing.T, p *PasswdFile) string {
	t.Helper()
	b, err := os.ReadFile(p.Path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func passwordField(t *testing.T, content, user string) string {
	t.Helper()
	for _, l := range strings.Split(content, "\n") {
		if u, rest, ok := strings.Cut(l, ":"); ok && u == user {
			pw, _, _ := strings.Cut(rest, ":")
			return pw
		}
	}
	t.Fatalf("no line for %s in\n%s", user, content)
	return ""
}

func TestCreateMailboxesAddsUnusableLinesOnce(t *testing.T) {
	ctx := authtest.Context(t, 30*time.Second)
	p := newFile(t, "# managed by the provider\nold@example.org:{PLAIN}x:1000:1000::/home/old::\n")
	for _, err := range p.CreateMailboxes(ctx, []string{"a@example.org", "b@example.org", "old@example.org"}) {
		if err != nil {
			t.Fatal(err)
		}
	}
	first := read(t, p)
	if !strings.HasPrefix(first, "# managed by the provider\nold@example.org:{PLAIN}x:1000:1000::/home/old::\n") {
		t.Fatalf("existing lines changed:\n%s", first)
	}
	for _, u := range []string{"a@example.org", "b@example.org"} {
		h := passwordField(t, first, u)
		if !strings.HasPrefix(h, "{SHA512-CRYPT}$6$") {
			t.Fatalf("%s has %q", u, h)
		}
		for _, guess := range []string{"", u, "password"} {
			if ok, _ := passhash.Verify(guess, h); ok {
				t.Fatalf("%s's placeholder accepts %q", u, guess)
			}
		}
	}
	if passwordField(t, first, "a@example.org") == passwordField(t, first, "b@example.org") {
		t.Fatal("two placeholders are equal")
	}
	for _, err := range p.CreateMailboxes(ctx, []string{"a@example.org"}) {
		if err != nil {
			t.Fatal(err)
		}
	}
	if second := read(t, p); second != first {
		t.Fatalf("second run changed the file:\n%s", second)
	}
}

func TestSetPasswordKeepsOtherFieldsModeAndMakesDovecotNoticeIt(t *testing.T) {
	ctx := authtest.Context(t, 30*time.Second)
	p := newFile(t, "u@example.org:{PLAIN}old:1000:1000::/home/u::userdb_quota_rule=*:storage=1G\n")
	before, _ := os.Stat(p.Path)
	start := time.Now()
	if err := p.SetPassword(ctx, "u@example.org", "New-Passw0rd!"); err != nil {
		t.Fatal(err)
	}
	content := read(t, p)
	h := passwordField(t, content, "u@example.org")
	if ok, _ := passhash.Verify("New-Passw0rd!", h); !ok {
		t.Fatalf("stored %q does not verify", h)
	}
	if !strings.HasSuffix(strings.TrimSpace(content), ":1000:1000::/home/u::userdb_quota_rule=*:storage=1G") {
		t.Fatalf("fields after the password lost:\n%s", content)
	}
	after, _ := os.Stat(p.Path)
	if after.Mode().Perm() != 0o604 {
		t.Fatalf("mode %v, want 0604", after.Mode().Perm())
	}
	if !after.ModTime().Truncate(time.Second).After(before.ModTime().Truncate(time.Second)) {
		t.Fatalf("mtime %v not in a later second than %v", after.ModTime(), before.ModTime())
	}
	if time.Now().Truncate(time.Second).Equal(start.Truncate(time.Second)) {
		t.Fatal("returned within the second of the change: Dovecot may not have seen it")
	}
	// Same-size rewrites in quick succession still get distinct mtimes.
	if err := p.SetPassword(ctx, "u@example.org", "New-Passw0rd?"); err != nil {
		t.Fatal(err)
	}
	again, _ := os.Stat(p.Path)
	if !again.ModTime().After(after.ModTime()) {
		t.Fatalf("second rewrite kept mtime %v", again.ModTime())
	}
}

func TestConcurrentEditsLoseNothing(t *testing.T) {
	ctx := authtest.Context(t, time.Minute)
	p := newFile(t, "")
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// A second adapter on the same file stands for another process.
			q := &PasswdFile{Path: p.Path, Scheme: p.Scheme, Argon2: cheapArgon}
			for _, err := range q.CreateMailboxes(ctx, []string{fmt.Sprintf("u%d@example.org", i)}) {
				if err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	content := read(t, p)
	for i := range 8 {
		passwordField(t, content, fmt.Sprintf("u%d@example.org", i))
	}
}

func TestEditGivesUpWhenTheLockIsHeldPastTheDeadline(t *testing.T) {
	p := newFile(t, "")
	unlock, err := lock(context.Background(), p.Path+".lock")
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if errs := p.CreateMailboxes(ctx, []string{"a@example.org"}); errs[0] == nil {
		t.Fatal("edit went ahead while another process held the lock")
	}
}

// TestRealDovecotAcceptsOnlyTheNewPassword runs the adapter on the passdb
// of a real Dovecot and logs in over IMAP.
func TestRealDovecotAcceptsOnlyTheNewPassword(t *testing.T) {
	srv := authtest.Dovecot(t, nil)
	ctx := authtest.Context(t, time.Minute)
	const user = "carol@example.org"
	for _, scheme := range []string{passhash.SHA512Crypt, passhash.Argon2ID, passhash.BLFCrypt} {
		t.Run(scheme, func(t *testing.T) {
			p := &PasswdFile{Path: authtest.PasswdPath(srv), Scheme: scheme, Argon2: cheapArgon}
			if errs := p.CreateMailboxes(ctx, []string{user}); errs[0] != nil {
				t.Fatal(errs[0])
			}
			if err := authtest.IMAPLogin(srv.Addr, user, "Legacy-Passw0rd!"); !authtest.IsRefusal(err) {
				t.Fatalf("login before a password was set: %v, want a refusal", err)
			}
			newPw := "Brand-New-" + scheme + "-1!"
			if err := p.SetPassword(ctx, user, newPw); err != nil {
				t.Fatal(err)
			}
			if err := authtest.IMAPLogin(srv.Addr, user, newPw); err != nil {
				t.Fatalf("login with the new password: %v", err)
			}
			if err := authtest.IMAPLogin(srv.Addr, user, "Legacy-Passw0rd!"); !authtest.IsRefusal(err) {
				t.Fatalf("login with the old password: %v, want a refusal", err)
			}
		})
	}
}

// TestUserNamesThatWouldCorruptTheFileAreRefused: a name starting with
// '#' would turn the user's line into a comment, ':' and line breaks
// would split it.
func TestUserNamesThatWouldCorruptTheFileAreRefused(t *testing.T) {
	p := newFile(t, "keep@example.org:{PLAIN}x::::::\n")
	ctx := authtest.Context(t, 30*time.Second)
	users := []string{"#admin@example.org", "a:b@example.org", "a\nb@example.org", "ok@example.org"}
	errs := p.CreateMailboxes(ctx, users)
	for i, err := range errs[:3] {
		if err == nil {
			t.Errorf("CreateMailboxes(%q) accepted", users[i])
		}
	}
	if errs[3] != nil {
		t.Fatalf("a valid user alongside: %v", errs[3])
	}
	if err := p.SetPassword(ctx, "#admin@example.org", "Some-Passw0rd!"); err == nil {
		t.Error("SetPassword of a comment-like user accepted")
	}
	content := read(t, p)
	if strings.Contains(content, "admin@example.org") || !strings.Contains(content, "ok@example.org:") || !strings.HasPrefix(content, "keep@example.org:") {
		t.Fatalf("passwd-file now\n%s", content)
	}
}
