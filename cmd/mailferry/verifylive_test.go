package main

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/rs/zerolog"

	"github.com/mailferry/mailferry/cmd/mailferry/verify"
	"github.com/mailferry/mailferry/shared/broker"
	"github.com/mailferry/mailferry/shared/config"
	"github.com/mailferry/mailferry/shared/job"
	"github.com/mailferry/mailferry/shared/mailscan"
	"github.com/mailferry/mailferry/shared/testenv/dovecottest"
	"github.com/mailferry/mailferry/shared/testenv/e2etest"
)

// liveMessage is a small message of the live-cutover tests, named by its
// subject (its Message-ID is the subject with dots).
func liveMessage(subject string, flags []string, date time.Time) dovecottest.Message {
	id := strings.ReplaceAll(subject, " ", ".")
	body := "From: someone@old.example\r\nTo: user1@old.example\r\nSubject: " + subject + "\r\nMessage-ID: <" + id + "@old.example>\r\n\r\nabout " + subject + "\r\n"
	return dovecottest.Message{Body: []byte(body), Flags: flags, Date: date}
}

// folderMessages are messages to seed into a folder.
type folderMessages struct {
	folder string
	msgs   []dovecottest.Message
}

// livePeers starts a source and a target Dovecot with one user, seeds the
// source's INBOX with msgs (and more folders with more), migrates it with the real migrate (so that
// the loader's ledger exists) and returns the peers, the configuration
// and the mailbox.
func livePeers(t *testing.T, ctx context.Context, target dovecottest.Options, msgs []dovecottest.Message, more ...folderMessages) (*e2etest.Peers, string, *config.Config, job.Mailbox) {
	t.Helper()
	p := e2etest.Start(t, 1, target)
	for _, f := range append([]folderMessages{{"INBOX", msgs}}, more...) {
		if err := p.Src.Seed(p.Users[0], f.folder, f.msgs); err != nil {
			t.Fatal(err)
		}
	}
	conf, cfg := p.Config(t, filepath.Join(p.Dir, "nats"))
	if out, err := cli(t, ctx, "migrate", "-c", conf); err != nil {
		t.Fatalf("migrate: %v\n%s", err, out)
	}
	boxes, err := inventory(cfg)
	if err != nil || len(boxes) != 1 {
		t.Fatalf("inventory: %v, %d mailboxes", err, len(boxes))
	}
	return p, conf, cfg, boxes[0]
}

// verifyWithLedger verifies mb as verify does with the broker at hand:
// with the loader's ledger, and opts.
func verifyWithLedger(t *testing.T, ctx context.Context, cfg *config.Config, mb job.Mailbox, opts ...verify.Option) verify.MailboxReport {
	t.Helper()
	b, err := broker.Open(ctx, cfg.NATS, "test", zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if err := b.Use(ctx, broker.Needs{Reads: []string{broker.BucketLedger}}); err != nil {
		t.Fatal(err)
	}
	return verify.Mailbox(ctx, cfg, mb, append(opts, verify.WithLedger(b.Ledger))...)
}

// login logs in as user at addr with the peers' master user.
func login(t *testing.T, addr, user string) *imapclient.Client {
	t.Helper()
	c, err := imapclient.DialInsecure(addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.Login(user+"*admin", e2etest.MasterPassword).Wait(); err != nil {
		t.Fatal(err)
	}
	return c
}

// flagsBySubject reads the flags of every message of folder, normalised
// as verify compares them, by subject.
func flagsBySubject(t *testing.T, c *imapclient.Client, folder string) map[string]string {
	t.Helper()
	if _, err := c.Select(folder, &imap.SelectOptions{ReadOnly: true}).Wait(); err != nil {
		t.Fatal(err)
	}
	all := imap.SeqSet{}
	all.AddRange(1, 0)
	msgs, err := c.Fetch(all, &imap.FetchOptions{Flags: true, Envelope: true}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, m := range msgs {
		out[m.Envelope.Subject] = strings.Join(mailscan.NormalizeFlags(m.Flags), " ")
	}
	return out
}

// storeFlags changes the flags of the message with subject in folder of
// c's user.
func storeFlags(t *testing.T, c *imapclient.Client, folder, subject string, op imap.StoreFlagsOp, flags ...imap.Flag) {
	t.Helper()
	if _, err := c.Select(folder, nil).Wait(); err != nil {
		t.Fatal(err)
	}
	data, err := c.UIDSearch(&imap.SearchCriteria{Header: []imap.SearchCriteriaHeaderField{{Key: "Subject", Value: subject}}}, nil).Wait()
	if err != nil || len(data.AllUIDs()) != 1 {
		t.Fatalf("search %q: %v, %v", subject, err, data)
	}
	if err := c.Store(imap.UIDSetNum(data.AllUIDs()...), &imap.StoreFlags{Op: op, Silent: true, Flags: flags}, nil).Close(); err != nil {
		t.Fatalf("store %q: %v", subject, err)
	}
}

// kindsOf names the entries of a mailbox's report, of the list each
// folder's pick chooses, by kind and subject, sorted.
func kindsOf(m verify.MailboxReport, pick func(verify.FolderReport) []verify.Diff) []string {
	var out []string
	for _, f := range m.Folders {
		for _, d := range pick(f) {
			out = append(out, d.Kind+" "+d.Subject)
		}
	}
	slices.Sort(out)
	return out
}

func differences(f verify.FolderReport) []verify.Diff { return f.Differences }

func TestVerifyCountsMailThatReachedTheSourceAfterThePassStartedAsNewAtSource(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	old := time.Date(2019, 3, 4, 5, 6, 7, 0, time.UTC)
	var msgs []dovecottest.Message
	for i := range 4 {
		msgs = append(msgs, liveMessage(fmt.Sprintf("copied %d", i), []string{`\Seen`}, old.Add(time.Duration(i)*time.Hour)))
	}
	p, conf, cfg, mb := livePeers(t, ctx, dovecottest.Options{}, msgs)
	started := time.Now().UTC().Add(-time.Hour).Truncate(time.Second)

	// Mail delivered to the old server after the pass started.
	if err := p.Src.Seed(mb.SourceUser, "INBOX", []dovecottest.Message{liveMessage("arrived during the pass", nil, started.Add(30*time.Minute))}); err != nil {
		t.Fatal(err)
	}
	m := verifyWithLedger(t, ctx, cfg, mb, verify.NewAtSourceAfter(started))
	if !m.OK || m.NewAtSource != 1 || m.NewAtSourceAfter == nil || !m.NewAtSourceAfter.Equal(started) ||
		!slices.Equal(kindsOf(m, func(f verify.FolderReport) []verify.Diff { return f.NewAtSource }), []string{"new_at_source arrived during the pass"}) {
		t.Errorf("new mail at the source: ok %v, %d new at source after %v, %+v; want ok, the new one new at source", m.OK, m.NewAtSource, m.NewAtSourceAfter, m.Folders)
	}
	var text strings.Builder
	(&verify.Report{Mailboxes: []verify.MailboxReport{m}}).WriteText(&text)
	if want := "1 new at source since the pass started at " + started.Format(time.RFC3339); !strings.Contains(text.String(), want) || !strings.HasPrefix(text.String(), "ok ") {
		t.Errorf("text report:\n%s\nwant ok and %q", text.String(), want)
	}
	// Without the option it is missing, and the CLI exits 1.
	if r, err := verifyCLI(t, ctx, "-c", conf); !errors.Is(err, errDifferent) || !slices.Equal(kindsOf(r.Mailboxes[0], differences), []string{"missing arrived during the pass"}) {
		t.Errorf("plain verify: err %v, differences %q; want the new one missing", err, kindsOf(r.Mailboxes[0], differences))
	}

	// A message moved to another folder at the source after the copy
	// keeps its INTERNALDATE, yet the next pass takes it: with the ledger
	// it is new at source, its copy in INBOX deleted at source.
	for _, args := range [][]string{
		{"mailbox", "create", "-u", mb.SourceUser, "Archive"},
		{"move", "-u", mb.SourceUser, "Archive", "mailbox", "INBOX", "subject", "copied 0"},
	} {
		if out, err := p.Src.Doveadm(ctx, args...); err != nil {
			t.Fatalf("doveadm %q: %v\n%s", args, err, out)
		}
	}
	m = verifyWithLedger(t, ctx, cfg, mb, verify.NewAtSourceAfter(started))
	fresh := func(f verify.FolderReport) []verify.Diff { return f.NewAtSource }
	if !m.OK || m.NewAtSource != 2 || m.DeletedAtSource != 1 || !slices.Equal(kindsOf(m, fresh), []string{"new_at_source arrived during the pass", "new_at_source copied 0"}) {
		t.Errorf("a message moved at the source: ok %v, new at source %q, %d deleted at source, differences %q; want ok, the moved one new at source",
			m.OK, kindsOf(m, fresh), m.DeletedAtSource, kindsOf(m, differences))
	}
	if m := verifyWithLedger(t, ctx, cfg, mb); m.OK || !slices.Equal(kindsOf(m, differences), []string{"missing arrived during the pass", "missing copied 0"}) {
		t.Errorf("without NewAtSourceAfter: ok %v, differences %q; want both missing", m.OK, kindsOf(m, differences))
	}

	// A message from before the pass started that the target lacks is
	// missing still.
	if err := p.Src.Seed(mb.SourceUser, "INBOX", []dovecottest.Message{liveMessage("lost before the pass", nil, started.Add(-time.Minute))}); err != nil {
		t.Fatal(err)
	}
	m = verifyWithLedger(t, ctx, cfg, mb, verify.NewAtSourceAfter(started))
	if m.OK || m.NewAtSource != 2 || !slices.Equal(kindsOf(m, differences), []string{"missing lost before the pass"}) {
		t.Errorf("a message from before the pass: ok %v, %d new at source, differences %q; want it missing, the new one still new", m.OK, m.NewAtSource, kindsOf(m, differences))
	}
}

func TestVerifyReportsTheCopyOfAMessageDeletedAtTheSourceAsDeletedAtSource(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	old := time.Date(2019, 3, 4, 5, 6, 7, 0, time.UTC)
	var msgs []dovecottest.Message
	for i := range 5 {
		msgs = append(msgs, liveMessage(fmt.Sprintf("kept %d", i), []string{`\Seen`}, old.Add(time.Duration(i)*time.Hour)))
	}
	msgs = append(msgs, liveMessage("deleted by the user", nil, old.Add(-time.Hour)))
	p, conf, cfg, mb := livePeers(t, ctx, dovecottest.Options{}, msgs)

	// The user deletes a message on the old server after the copy.
	if out, err := p.Src.Doveadm(ctx, "expunge", "-u", mb.SourceUser, "mailbox", "INBOX", "subject", "deleted by the user"); err != nil {
		t.Fatalf("doveadm expunge: %v\n%s", err, out)
	}
	deleted := func(f verify.FolderReport) []verify.Diff { return f.DeletedAtSource }
	r, err := verifyCLI(t, ctx, "-c", conf)
	m := r.Mailboxes[0]
	if err != nil || !m.OK || m.DeletedAtSource != 1 || !slices.Equal(kindsOf(m, deleted), []string{"deleted_at_source deleted by the user"}) {
		t.Fatalf("verify with the ledger: err %v, ok %v, %d deleted at source %q, differences %q; want ok, the copy deleted at source",
			err, m.OK, m.DeletedAtSource, kindsOf(m, deleted), kindsOf(m, differences))
	}
	d := m.Folders[0].DeletedAtSource[0]
	if d.Folder != "INBOX" || d.UID == 0 || d.MessageID != "<deleted.by.the.user@old.example>" || !strings.Contains(d.Got, "which the source no longer holds") {
		t.Errorf("deleted at source %+v: want the target's copy named", d)
	}
	code, out, _ := mailferry(t, "verify", "-c", conf)
	if code != 0 || !strings.Contains(out, "1 deleted at source after the copy (kept at target)") {
		t.Errorf("text report: exit %d\n%s\nwant 0 and the copy counted", code, out)
	}

	// Without the ledger nothing says it was copied: extra.
	if m := verify.Mailbox(ctx, cfg, mb); m.OK || !slices.Equal(kindsOf(m, differences), []string{"extra deleted by the user"}) {
		t.Errorf("without the ledger: ok %v, differences %q; want the copy extra", m.OK, kindsOf(m, differences))
	}

	// Nor when the source folder's UIDVALIDITY changed: its UIDs name
	// other messages now.
	if out, err := p.Src.Doveadm(ctx, "mailbox", "update", "-u", mb.SourceUser, "--uid-validity", "4242", "INBOX"); err != nil {
		t.Fatalf("doveadm mailbox update: %v\n%s", err, out)
	}
	if m := verifyWithLedger(t, ctx, cfg, mb); m.OK || m.DeletedAtSource != 0 || !slices.Equal(kindsOf(m, differences), []string{"extra deleted by the user"}) {
		t.Errorf("source UIDVALIDITY changed: ok %v, %d deleted at source, differences %q; want the copy extra", m.OK, m.DeletedAtSource, kindsOf(m, differences))
	}
}

func TestVerifyResyncFlagsSetsTheTargetCopiesFlagsToTheSources(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	old := time.Date(2019, 3, 4, 5, 6, 7, 0, time.UTC)
	restricted := liveMessage("restricted", []string{`\Seen`}, old)
	msgs := []dovecottest.Message{
		liveMessage("to be read", nil, old),
		liveMessage("to be unflagged", []string{`\Seen`, `\Flagged`}, old.Add(time.Hour)),
		liveMessage("to be labelled", []string{`\Seen`, "Work"}, old.Add(2*time.Hour)),
		liveMessage("untouched", []string{`\Answered`, `\Seen`}, old.Add(3*time.Hour)),
	}
	// The target refuses keywords (and all flags but \Seen and \Deleted)
	// in folder Restricted: its ACL takes the write right.
	aclDir, err := os.MkdirTemp("", "mailferry-acl-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(aclDir) })
	acl := filepath.Join(aclDir, "dovecot-acl")
	if err := os.WriteFile(acl, []byte("* anyone lrwstipekxa\nRestricted -anyone w\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(aclDir, 0o755); err != nil {
		t.Fatal(err)
	}
	// And keywords longer than 20 bytes anywhere (the source takes 50).
	target := dovecottest.Options{ExtraConfig: "mail_max_keyword_length = 20\nmail_plugins = $mail_plugins acl\nplugin {\n  acl = vfile:" + acl + "\n}\n"}
	p, conf, _, mb := livePeers(t, ctx, target, msgs, folderMessages{"Restricted", []dovecottest.Message{restricted}})
	user := mb.SourceUser
	src, tgt := login(t, p.Src.Addr, user), login(t, p.Tgt.Addr, user)

	// The user reads mail on the old server until the switch.
	storeFlags(t, src, "INBOX", "to be read", imap.StoreFlagsAdd, imap.FlagSeen)
	storeFlags(t, src, "INBOX", "to be unflagged", imap.StoreFlagsDel, imap.FlagFlagged)
	storeFlags(t, src, "INBOX", "to be labelled", imap.StoreFlagsAdd, "$Project-X")
	want := flagsBySubject(t, src, "INBOX")

	r, err := verifyCLI(t, ctx, "-c", conf)
	if !errors.Is(err, errDifferent) || !slices.Equal(kindsOf(r.Mailboxes[0], differences), []string{"flags to be labelled", "flags to be read", "flags to be unflagged"}) {
		t.Fatalf("plain verify: err %v, differences %q; want the three flags differences", err, kindsOf(r.Mailboxes[0], differences))
	}

	r, err = verifyCLI(t, ctx, "-c", conf, "-resync-flags")
	m := r.Mailboxes[0]
	resynced := func(f verify.FolderReport) []verify.Diff { return f.Resynced }
	if err != nil || !m.OK || m.Resynced != 3 || !slices.Equal(kindsOf(m, resynced), []string{"resynced to be labelled", "resynced to be read", "resynced to be unflagged"}) {
		t.Fatalf("verify -resync-flags: err %v, ok %v, %d resynced %q, differences %q; want the three resynced", err, m.OK, m.Resynced, kindsOf(m, resynced), kindsOf(m, differences))
	}
	for _, d := range m.Folders[0].Resynced {
		if d.Want != want[d.Subject] || d.Got == d.Want || d.TargetUID == 0 {
			t.Errorf("resynced %+v: want the source's flags %q, the target's before, and the copy's UID", d, want[d.Subject])
		}
	}
	if got := flagsBySubject(t, tgt, "INBOX"); !maps.Equal(got, want) {
		t.Errorf("target flags %q, want the source's %q", got, want)
	}
	if code, out, _ := mailferry(t, "verify", "-c", conf); code != 0 || strings.Contains(out, "resync") {
		t.Errorf("verify after the resync: exit %d\n%s\nwant clean, nothing left to resync", code, out)
	}
	if code, out, _ := mailferry(t, "verify", "-c", conf, "-resync-flags"); code != 0 || !strings.Contains(out, "resync-flags: set the flags of 0 messages") {
		t.Errorf("a second resync: exit %d\n%s\nwant nothing changed", code, out)
	}
	storeFlags(t, src, "INBOX", "untouched", imap.StoreFlagsDel, imap.FlagAnswered)
	if code, out, _ := mailferry(t, "verify", "-c", conf, "-resync-flags"); code != 0 || !strings.Contains(out, "flags of 1 messages resynced from the source") ||
		!strings.Contains(out, "resync-flags: set the flags of 1 messages at the target to the source's") {
		t.Errorf("resync in text: exit %d\n%s\nwant 1 counted and said", code, out)
	}
	// Keywords keep the source's spelling.
	if _, err := tgt.Select("INBOX", &imap.SelectOptions{ReadOnly: true}).Wait(); err != nil {
		t.Fatal(err)
	}
	all := imap.SeqSet{}
	all.AddRange(1, 0)
	fetched, err := tgt.Fetch(all, &imap.FetchOptions{Flags: true, Envelope: true}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fetched {
		if f.Envelope.Subject == "to be labelled" && !slices.Contains(f.Flags, "$Project-X") {
			t.Errorf("target flags of %q: %v, want $Project-X as the source spells it", f.Envelope.Subject, f.Flags)
		}
	}

	// A keyword the target refuses (Restricted's PERMANENTFLAGS lack \*)
	// is not sent, and named in the difference that stays; the rest of
	// the message's flags are set.
	storeFlags(t, src, "Restricted", "restricted", imap.StoreFlagsAdd, "Urgent")
	r, err = verifyCLI(t, ctx, "-c", conf, "-resync-flags")
	m = r.Mailboxes[0]
	if !errors.Is(err, errDifferent) || m.Resynced != 0 || !slices.Equal(kindsOf(m, differences), []string{"flags restricted"}) {
		t.Fatalf("resync of a refused keyword: err %v, %d resynced, differences %q; want the flags difference left", err, m.Resynced, kindsOf(m, differences))
	}
	for _, f := range m.Folders {
		for _, d := range f.Differences {
			if !slices.Equal(d.Refused, []string{"urgent"}) || d.Want != `\Seen urgent` || d.Got != `\Seen` {
				t.Errorf("difference %+v: want urgent refused, the rest set", d)
			}
		}
	}
	if code, out, _ := mailferry(t, "verify", "-c", conf, "-resync-flags"); code != 1 || !strings.Contains(out, "refused by the target: urgent") {
		t.Errorf("refused keyword in text: exit %d\n%s\nwant 1 and the keyword named", code, out)
	}

	// A STORE the target refuses leaves the difference, with the error.
	storeFlags(t, src, "INBOX", "untouched", imap.StoreFlagsAdd, "a-keyword-of-30-bytes-and-more")
	r, err = verifyCLI(t, ctx, "-c", conf, "-resync-flags")
	m = r.Mailboxes[0]
	if !errors.Is(err, errDifferent) || m.Resynced != 0 || !slices.Equal(kindsOf(m, differences), []string{"flags restricted", "flags untouched"}) {
		t.Fatalf("a refused STORE: err %v, %d resynced, differences %q; want the difference left", err, m.Resynced, kindsOf(m, differences))
	}
	for _, f := range m.Folders {
		for _, d := range f.Differences {
			if d.Subject == "untouched" && (!strings.Contains(d.ResyncError, "UID STORE") || d.Want == d.Got) {
				t.Errorf("difference %+v: want the failed STORE named", d)
			}
		}
	}
}
