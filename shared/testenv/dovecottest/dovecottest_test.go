package dovecottest

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-sasl"

	"github.com/mailferry/mailferry/shared/testenv/proc"
)

const (
	testUser     = "alice@example.test"
	testPassword = "alice-secret"
	testMaster   = "admin"
	testMasterPw = "master-secret"
)

// layouts are the two on-disk layouts a migration meets: LAYOUT=fs with
// '/' and Maildir++ with '.'.
var layouts = []struct {
	name string
	sep  rune
}{
	{"fs layout with slash separator", '/'},
	{"maildir++ with dot separator", '.'},
}

func TestSeededMessagesReadBackIdenticallyOverIMAP(t *testing.T) {
	t.Parallel()
	for _, l := range layouts {
		t.Run(l.name, func(t *testing.T) {
			t.Parallel()
			sep := string(l.sep)
			s := StartT(t, Options{
				Separator:      l.sep,
				Users:          map[string]string{testUser: testPassword},
				MasterUser:     testMaster,
				MasterPassword: testMasterPw,
			})
			folders := map[string][]Message{
				"INBOX":                      sampleMessages("inbox", 2),
				"Archive" + sep + "2010":     sampleMessages("archive", 3),
				"Entwürfe" + sep + "Ünïcødé": sampleMessages("unicode", 4),
			}
			for name, msgs := range folders {
				if err := s.Seed(testUser, name, msgs); err != nil {
					t.Fatal(err)
				}
				assertPathMatchesDovecot(t, s, testUser, name)
			}

			c := dialMaster(t, s, testUser)
			list, err := c.List("", "*", nil).Collect()
			if err != nil {
				t.Fatalf("LIST: %v", err)
			}
			seen := map[string]bool{}
			for _, d := range list {
				if d.Delim != l.sep {
					t.Errorf("LIST %q: delimiter %q, want %q", d.Mailbox, d.Delim, l.sep)
				}
				seen[d.Mailbox] = true
			}
			for name := range folders {
				if !seen[name] {
					t.Errorf("LIST lacks %q; got %v", name, mailboxNames(list))
				}
			}
			for name, msgs := range folders {
				assertMailbox(t, c, name, msgs)
			}
		})
	}
}

func TestSeedIntoSelectedMailboxIsSeenAfterNoop(t *testing.T) {
	t.Parallel()
	s := StartT(t, Options{Users: map[string]string{testUser: testPassword}, PlainPasswords: true})
	first := sampleMessages("first", 2)
	if err := s.Seed(testUser, "Work/Reports", first); err != nil {
		t.Fatal(err)
	}
	c := dialLogin(t, s, testUser, testPassword)
	if _, err := c.Select("Work/Reports", nil).Wait(); err != nil {
		t.Fatalf("SELECT: %v", err)
	}
	second := sampleMessages("second", 3)
	if err := s.Seed(testUser, "Work/Reports", second); err != nil {
		t.Fatal(err)
	}
	if err := c.Noop().Wait(); err != nil {
		t.Fatalf("NOOP: %v", err)
	}
	if got, want := c.Mailbox().NumMessages, uint32(len(first)+len(second)); got != want {
		t.Fatalf("after NOOP the mailbox has %d messages, want %d", got, want)
	}
	assertMailbox(t, c, "Work/Reports", append(first, second...))
}

func TestMasterUserLogsInWithSeparatorAndFailuresAreFast(t *testing.T) {
	t.Parallel()
	s := StartT(t, Options{
		Users:          map[string]string{testUser: testPassword},
		MasterUser:     testMaster,
		MasterPassword: testMasterPw,
	})
	tests := []struct {
		name     string
		user, pw string
		wantOK   bool
	}{
		{"master with user*master", testUser + "*" + testMaster, testMasterPw, true},
		{"user with own password", testUser, testPassword, true},
		{"wrong password", testUser, "nope", false},
		{"master impersonating unknown user", "ghost@example.test*" + testMaster, testMasterPw, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := dial(t, s.Addr)
			start := time.Now()
			err := c.Login(tt.user, tt.pw).Wait()
			if tt.wantOK && err != nil {
				t.Fatalf("LOGIN %s: %v", tt.user, err)
			}
			if !tt.wantOK {
				if err == nil {
					t.Fatalf("LOGIN %s succeeded, want NO", tt.user)
				}
				// auth_failure_delay = 0: a refusal must not cost 2 s.
				if d := time.Since(start); d > 1500*time.Millisecond {
					t.Errorf("refused LOGIN took %v", d)
				}
			}
		})
	}
}

func TestQuotaRefusesTooBigAppendWithNO(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		opts     Options
		wantCode imap.ResponseCode
	}{
		{"storage quota", Options{QuotaBytes: 20 * 1024}, imap.ResponseCodeOverQuota},
		{"max mail size", Options{MaxMailSize: 10 * 1024}, imap.ResponseCodeLimit},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.opts.Users = map[string]string{testUser: testPassword}
			s := StartT(t, tt.opts)
			c := dialLogin(t, s, testUser, testPassword)
			small := rfc822("small", strings.Repeat("x", 100))
			if err := appendMsg(c, "INBOX", small); err != nil {
				t.Fatalf("APPEND of a small message: %v", err)
			}
			big := rfc822("big", strings.Repeat("0123456789abcdef\r\n", 3000))
			err := appendMsg(c, "INBOX", big)
			var imapErr *imap.Error
			if !errors.As(err, &imapErr) || imapErr.Type != imap.StatusResponseTypeNo || imapErr.Code != tt.wantCode {
				t.Fatalf("APPEND of %d bytes: got %v, want NO [%s]", len(big), err, tt.wantCode)
			}
		})
	}
}

func TestAddUserAllowsLoginWithoutRestart(t *testing.T) {
	t.Parallel()
	s := StartT(t, Options{Users: map[string]string{testUser: testPassword}})
	c := dial(t, s.Addr)
	if err := c.Login("bob@example.test", "bob-pw").Wait(); err == nil {
		t.Fatal("LOGIN of a user not yet added succeeded")
	}
	if err := s.AddUser("bob@example.test", "bob-pw"); err != nil {
		t.Fatal(err)
	}
	dialLogin(t, s, "bob@example.test", "bob-pw")
	// A second change within the same second must be seen too.
	if err := s.AddUser("bob@example.test", "bob-pw2"); err != nil {
		t.Fatal(err)
	}
	dialLogin(t, s, "bob@example.test", "bob-pw2")
}

func TestTLSListenersVerifyWithCACert(t *testing.T) {
	t.Parallel()
	s := StartT(t, Options{TLS: true, Users: map[string]string{testUser: testPassword}})
	if s.TLSAddr == "" || len(s.CACertPEM) == 0 {
		t.Fatalf("TLS instance without TLSAddr or CACertPEM: %+v", s)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(s.CACertPEM) {
		t.Fatal("CACertPEM does not parse")
	}
	opts := &imapclient.Options{TLSConfig: &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}}
	tests := []struct {
		name string
		dial func() (*imapclient.Client, error)
	}{
		{"implicit TLS", func() (*imapclient.Client, error) { return imapclient.DialTLS(s.TLSAddr, opts) }},
		{"STARTTLS", func() (*imapclient.Client, error) { return imapclient.DialStartTLS(s.Addr, opts) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := tt.dial()
			if err != nil {
				t.Fatalf("dial: %v", err)
			}
			defer c.Close()
			if err := c.Login(testUser, testPassword).Wait(); err != nil {
				t.Fatalf("LOGIN: %v", err)
			}
		})
	}
}

func TestSubscribeAndAutoCreatedSpecialUse(t *testing.T) {
	t.Parallel()
	s := StartT(t, Options{AutoCreateSpecial: true, Users: map[string]string{testUser: testPassword}})
	if err := s.Seed(testUser, "Projects/Ünïcødé", sampleMessages("p", 1)); err != nil {
		t.Fatal(err)
	}
	if err := s.Subscribe(testUser, "Projects/Ünïcødé"); err != nil {
		t.Fatal(err)
	}
	c := dialLogin(t, s, testUser, testPassword)
	subs, err := c.List("", "*", &imap.ListOptions{SelectSubscribed: true, ReturnSpecialUse: true}).Collect()
	if err != nil {
		t.Fatalf("LIST (SUBSCRIBED): %v", err)
	}
	got := map[string][]imap.MailboxAttr{}
	for _, d := range subs {
		got[d.Mailbox] = d.Attrs
	}
	want := map[string]imap.MailboxAttr{
		"Sent": imap.MailboxAttrSent, "Drafts": imap.MailboxAttrDrafts, "Trash": imap.MailboxAttrTrash,
		"Junk": imap.MailboxAttrJunk, "Archive": imap.MailboxAttrArchive,
	}
	for name, attr := range want {
		if !slices.Contains(got[name], attr) {
			t.Errorf("subscribed %s: attrs %v, want %s", name, got[name], attr)
		}
	}
	if _, ok := got["Projects/Ünïcødé"]; !ok {
		t.Errorf("Projects/Ünïcødé not subscribed; subscribed: %v", mailboxNames(subs))
	}
}

func TestStopIsIdempotentAndLeavesNoProcesses(t *testing.T) {
	t.Parallel()
	Require(t)
	dir, err := os.MkdirTemp("", tempPrefix)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := Start(ctx, dir, Options{Users: map[string]string{testUser: testPassword}})
	if err != nil {
		t.Fatal(err)
	}
	// An open IMAP session forks an imap process that must die too.
	c := dialLogin(t, s, testUser, testPassword)
	defer c.Close()
	pgid := s.master.Pid()
	for i := 0; i < 2; i++ {
		if err := s.Stop(); err != nil {
			t.Fatalf("Stop #%d: %v", i+1, err)
		}
	}
	if conn, err := net.DialTimeout("tcp", s.Addr, time.Second); err == nil {
		conn.Close()
		t.Errorf("port %s still accepts connections after Stop", s.Addr)
	}
	if live := proc.GroupMembers(pgid); len(live) > 0 {
		t.Errorf("processes %v of group %d alive after Stop", live, pgid)
	}
}

func TestStartReportsLogTailOnBadConfig(t *testing.T) {
	t.Parallel()
	Require(t)
	dir, err := os.MkdirTemp("", tempPrefix)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err = Start(ctx, dir, Options{ExtraConfig: "no_such_setting = 1"})
	if err == nil {
		t.Fatal("Start with an unknown setting succeeded")
	}
	if !strings.Contains(err.Error(), "no_such_setting") {
		t.Errorf("error does not show Dovecot's complaint: %v", err)
	}
}

func TestSeedRejectsWhatMaildirCannotHold(t *testing.T) {
	t.Parallel()
	s := StartT(t, Options{Users: map[string]string{testUser: testPassword}, PlainPasswords: true})
	var many []string
	for i := 0; i < maxKeywords+1; i++ {
		many = append(many, fmt.Sprintf("kw%d", i))
	}
	tests := []struct {
		name, user, folder string
		msg                Message
	}{
		{"unknown user", "ghost@example.test", "INBOX", Message{Body: []byte("x")}},
		{"empty folder level", testUser, "a//b", Message{Body: []byte("x")}},
		{"level named like a maildir subdir", testUser, "Work/cur", Message{Body: []byte("x")}},
		{"unknown system flag", testUser, "INBOX", Message{Body: []byte("x"), Flags: []string{`\Bogus`}}},
		{"keyword with space", testUser, "INBOX", Message{Body: []byte("x"), Flags: []string{"a b"}}},
		{"more than 26 keywords", testUser, "Many", Message{Body: []byte("x"), Flags: many}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := s.Seed(tt.user, tt.folder, []Message{tt.msg}); err == nil {
				t.Fatal("Seed succeeded")
			}
		})
	}
}

func TestStartTRemovesInstancesOfDeadTestBinaries(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	// A finished child's pid names no live process (reuse within the test is
	// practically impossible).
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	owners := map[string]int{"dead": cmd.Process.Pid, "alive": os.Getpid()}
	for name, pid := range owners {
		dir := filepath.Join(root, tempPrefix+name)
		if err := os.MkdirAll(filepath.Join(dir, "run"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, proc.OwnerFile), []byte(strconv.Itoa(pid)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	proc.Sweep(t, root, tempPrefix, killStaleMaster)
	if _, err := os.Stat(filepath.Join(root, tempPrefix+"dead")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("instance dir of a dead owner survived the sweep (stat: %v)", err)
	}
	if _, err := os.Stat(filepath.Join(root, tempPrefix+"alive")); err != nil {
		t.Errorf("instance dir of a live owner was removed: %v", err)
	}
}

// sampleMessages returns n CRLF messages with varied flags, keywords and
// dates (in several zones, to check instants rather than strings).
func sampleMessages(tag string, n int) []Message {
	flagSets := [][]string{
		{`\Seen`},
		{`\Seen`, `\Answered`, "$Label1"},
		{`\Flagged`, "Work", "$Forwarded"},
		{},
		{`\Draft`, `\Deleted`, "Work"},
	}
	zones := []*time.Location{time.UTC, time.FixedZone("EST", -5*3600), time.FixedZone("IST", 5*3600+1800)}
	msgs := make([]Message, n)
	for i := range msgs {
		body := rfc822(fmt.Sprintf("%s %d: Grüße", tag, i), fmt.Sprintf("Body of %s #%d\r\nmit Umlauten: äöü\r\n", tag, i))
		msgs[i] = Message{
			Body:  body,
			Flags: flagSets[i%len(flagSets)],
			Date:  time.Date(2010, time.Month(1+i%12), 3+i, 10+i, 17, 42, 0, zones[i%len(zones)]),
		}
	}
	return msgs
}

func rfc822(subject, text string) []byte {
	return []byte("From: Sender <sender@example.test>\r\n" +
		"To: alice@example.test\r\n" +
		"Subject: " + subject + "\r\n" +
		"Date: Wed, 03 Mar 2010 10:17:42 +0000\r\n" +
		"Message-ID: <" + strings.ReplaceAll(subject, " ", ".") + "@example.test>\r\n" +
		"MIME-Version: 1.0\r\n" +
		"Content-Type: text/plain; charset=utf-8\r\n" +
		"Content-Transfer-Encoding: 8bit\r\n" +
		"\r\n" + text)
}

func dial(t *testing.T, addr string) *imapclient.Client {
	t.Helper()
	c, err := imapclient.DialInsecure(addr, nil)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func dialLogin(t *testing.T, s *Server, user, password string) *imapclient.Client {
	t.Helper()
	c := dial(t, s.Addr)
	if err := c.Login(user, password).Wait(); err != nil {
		t.Fatalf("LOGIN %s: %v", user, err)
	}
	return c
}

// dialMaster logs in as user via SASL PLAIN with the master's credentials
// and authzid=user.
func dialMaster(t *testing.T, s *Server, user string) *imapclient.Client {
	t.Helper()
	c := dial(t, s.Addr)
	if err := c.Authenticate(sasl.NewPlainClient(user, testMaster, testMasterPw)); err != nil {
		t.Fatalf("AUTHENTICATE PLAIN as %s via %s: %v", user, testMaster, err)
	}
	return c
}

func appendMsg(c *imapclient.Client, mailbox string, body []byte) error {
	cmd := c.Append(mailbox, int64(len(body)), nil)
	if _, err := cmd.Write(body); err != nil {
		return err
	}
	if err := cmd.Close(); err != nil {
		return err
	}
	_, err := cmd.Wait()
	return err
}

// assertPathMatchesDovecot checks that Seed wrote where Dovecot looks.
func assertPathMatchesDovecot(t *testing.T, s *Server, user, folder string) {
	t.Helper()
	out, err := s.Doveadm(context.Background(), "mailbox", "path", "-u", user, folder)
	if err != nil {
		t.Fatal(err)
	}
	mine, err := s.MaildirPath(user, folder)
	if err != nil {
		t.Fatal(err)
	}
	if got := filepath.Clean(strings.TrimSpace(string(out))); got != mine {
		t.Errorf("folder %q: Dovecot's path %s, MaildirPath %s", folder, got, mine)
	}
}

// assertMailbox selects name and checks count, order, bodies, flags and
// INTERNALDATE against msgs.
func assertMailbox(t *testing.T, c *imapclient.Client, name string, msgs []Message) {
	t.Helper()
	sel, err := c.Select(name, nil).Wait()
	if err != nil {
		t.Fatalf("SELECT %q: %v", name, err)
	}
	if sel.NumMessages != uint32(len(msgs)) {
		t.Fatalf("SELECT %q: %d messages, want %d", name, sel.NumMessages, len(msgs))
	}
	section := &imap.FetchItemBodySection{Peek: true}
	var seqs imap.SeqSet
	seqs.AddRange(1, uint32(len(msgs)))
	fetched, err := c.Fetch(seqs, &imap.FetchOptions{
		Flags:        true,
		InternalDate: true,
		UID:          true,
		BodySection:  []*imap.FetchItemBodySection{section},
	}).Collect()
	if err != nil {
		t.Fatalf("FETCH in %q: %v", name, err)
	}
	if len(fetched) != len(msgs) {
		t.Fatalf("FETCH in %q: %d messages, want %d", name, len(fetched), len(msgs))
	}
	slices.SortFunc(fetched, func(a, b *imapclient.FetchMessageBuffer) int { return int(a.SeqNum) - int(b.SeqNum) })
	for i, m := range msgs {
		got := fetched[i]
		if body := got.FindBodySection(section); !bytes.Equal(body, m.Body) {
			t.Errorf("%q #%d: body differs:\n got %q\nwant %q", name, i+1, body, m.Body)
		}
		if !got.InternalDate.Equal(m.Date.Truncate(time.Second)) {
			t.Errorf("%q #%d: INTERNALDATE %v, want %v", name, i+1, got.InternalDate, m.Date)
		}
		if gotFlags, wantFlags := normFlags(got.Flags), normStrings(m.Flags); !slices.Equal(gotFlags, wantFlags) {
			t.Errorf("%q #%d: flags %v, want %v", name, i+1, gotFlags, wantFlags)
		}
	}
}

// normFlags drops \Recent, which is session state and never seeded.
func normFlags(flags []imap.Flag) []string {
	var out []string
	for _, f := range flags {
		if !strings.EqualFold(string(f), `\Recent`) {
			out = append(out, string(f))
		}
	}
	return normStrings(out)
}

func normStrings(in []string) []string {
	out := slices.Clone(in)
	slices.Sort(out)
	return out
}

func mailboxNames(list []*imap.ListData) []string {
	var names []string
	for _, d := range list {
		names = append(names, d.Mailbox)
	}
	return names
}

// A server with a personal namespace prefix lists every folder but INBOX
// under it, says so in NAMESPACE, keeps its special-use folders under it,
// and Seed writes where Dovecot reads.
func TestAPrefixedNamespaceListsEveryFolderButINBOXUnderIt(t *testing.T) {
	t.Parallel()
	s := StartT(t, Options{Separator: '.', Prefix: "INBOX.", Users: map[string]string{testUser: testPassword}, PlainPasswords: true, AutoCreateSpecial: true})
	folders := map[string][]Message{
		"INBOX":              sampleMessages("inbox", 1),
		"INBOX.Sent Items":   sampleMessages("sent", 2),
		"INBOX.Archive.2010": sampleMessages("archive", 3),
	}
	for name, msgs := range folders {
		if err := s.Seed(testUser, name, msgs); err != nil {
			t.Fatal(err)
		}
		assertPathMatchesDovecot(t, s, testUser, name)
	}
	if err := s.Seed(testUser, "Archive.2010", nil); err == nil {
		t.Error("Seed took a folder name outside the namespace prefix")
	}
	c := dialLogin(t, s, testUser, testPassword)
	ns, err := c.Namespace().Wait()
	if err != nil || len(ns.Personal) != 1 || ns.Personal[0].Prefix != "INBOX." || ns.Personal[0].Delim != '.' {
		t.Fatalf("NAMESPACE: %+v %v", ns, err)
	}
	list, err := c.List("", "*", &imap.ListOptions{ReturnSpecialUse: true}).Collect()
	if err != nil {
		t.Fatalf("LIST: %v", err)
	}
	attrs := map[string][]imap.MailboxAttr{}
	for _, d := range list {
		attrs[d.Mailbox] = d.Attrs
	}
	for _, name := range []string{"INBOX", "INBOX.Sent Items", "INBOX.Archive.2010", "INBOX.Sent"} {
		if _, ok := attrs[name]; !ok {
			t.Errorf("LIST lacks %q; got %v", name, mailboxNames(list))
		}
	}
	if !slices.Contains(attrs["INBOX.Sent"], imap.MailboxAttrSent) {
		t.Errorf("INBOX.Sent attributes %v, want \\Sent", attrs["INBOX.Sent"])
	}
	for name, msgs := range folders {
		assertMailbox(t, c, name, msgs)
	}
}
