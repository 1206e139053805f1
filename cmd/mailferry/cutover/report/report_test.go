package report_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"golang.org/x/net/html"

	"github.com/mailferry/mailferry/cmd/mailferry/cutover/report"
	"github.com/mailferry/mailferry/cmd/mailferry/verify"
	"github.com/mailferry/mailferry/services/auth/account"
	"github.com/mailferry/mailferry/services/loader"
	"github.com/mailferry/mailferry/shared/broker"
	"github.com/mailferry/mailferry/shared/campaign"
	"github.com/mailferry/mailferry/shared/config"
	"github.com/mailferry/mailferry/shared/event"
	"github.com/mailferry/mailferry/shared/mailscan"
	"github.com/mailferry/mailferry/shared/record"
	"github.com/mailferry/mailferry/shared/subject"
)

// Hostile and non-ASCII names the page must show as text.
const (
	scriptFolder = "<script>alert(1)</script>"
	ampSubject   = "Q&A: <b>Grüße</b> from Zoë"
	deadSubject  = "Grüße & Küsse"
)

var t0 = time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)

func testContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// fixture is an embedded broker with the campaign bucket and, when full,
// every stream and bucket the services declare.
type fixture struct {
	cfg   *config.Config
	b     *broker.Broker
	kv    jetstream.KeyValue
	store *campaign.Store
}

func newFixture(t *testing.T, extraYAML string, full bool) *fixture {
	t.Helper()
	ctx := testContext(t)
	dir := t.TempDir()
	cfg, err := config.Parse(fmt.Appendf(nil, "nats: {data_dir: '%s'}\n%s", filepath.Join(dir, "nats"), extraYAML), dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := broker.Connect(ctx, cfg.NATS, "report-test", zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	if full {
		if err := b.DeclareAll(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Use(ctx, campaign.Needs); err != nil {
		t.Fatal(err)
	}
	kv, err := b.JS.KeyValue(ctx, broker.BucketCampaign)
	if err != nil {
		t.Fatal(err)
	}
	store := campaign.NewStore(kv)
	store.Now = func() time.Time { return t0 }
	return &fixture{cfg: cfg, b: b, kv: kv, store: store}
}

// addDomain puts acme.test in the campaign with three mailboxes and
// overwrites its record with one that failed in verifying after the switch.
func (f *fixture) addDomain(t *testing.T) {
	t.Helper()
	ctx := testContext(t)
	d, err := campaign.NewDomain("ACME.test.", []string{"anna@acme.test", "bob@acme.test", "zoë@acme.test"}, nil, campaign.OrderPrestage, 0, nil, t0)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := f.store.Add(ctx, d); err != nil {
		t.Fatal(err)
	}
	d.Phase, d.Stopped, d.Reason = campaign.Failed, campaign.Verifying, "verification of anna@acme.test found 2 differences"
	d.Entered = map[campaign.Phase]time.Time{
		campaign.Queued:       t0,
		campaign.Provisioning: t0.Add(time.Minute),
		campaign.Prestaging:   t0.Add(2 * time.Minute),
		campaign.Switching:    t0.Add(time.Hour),
		campaign.Draining:     t0.Add(time.Hour + time.Minute),
		campaign.Delta:        t0.Add(3 * time.Hour),
		campaign.Verifying:    t0.Add(3*time.Hour + 10*time.Minute),
		campaign.Failed:       t0.Add(3*time.Hour + 20*time.Minute),
	}
	d.DNS = campaign.DNS{SwitchedAt: t0.Add(time.Hour + time.Minute), Serial: 7, OldTTL: 300}
	raw, err := json.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.kv.Put(ctx, campaign.DomainKey(d.Domain), raw); err != nil {
		t.Fatal(err)
	}
}

func (f *fixture) apply(t *testing.T, mailbox string, facts ...campaign.Fact) {
	t.Helper()
	for _, fact := range facts {
		if _, _, err := f.store.ApplyMailbox(testContext(t), mailbox, fact); err != nil {
			t.Fatal(err)
		}
	}
}

func (f *fixture) putCheck(t *testing.T, mr verify.MailboxReport) {
	t.Helper()
	raw, err := json.Marshal(mr)
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	for _, fr := range mr.Folders {
		n += int64(len(fr.Differences))
	}
	c := campaign.Check{Mailbox: mr.Source, Pass: "p2", At: t0.Add(3*time.Hour + 15*time.Minute), OK: mr.OK, Differences: n, Report: raw}
	if err := f.store.PutCheck(testContext(t), c); err != nil {
		t.Fatal(err)
	}
}

func (f *fixture) publish(t *testing.T, m *nats.Msg) *jetstream.PubAck {
	t.Helper()
	ack, err := f.b.JS.PublishMsg(testContext(t), m)
	if err != nil {
		t.Fatal(err)
	}
	return ack
}

func (f *fixture) deadLetter(t *testing.T, mailbox, folder string, uid uint32, body string) {
	t.Helper()
	rec := &record.Message{Mailbox: mailbox, TargetUser: mailbox, Pass: "p1", Folder: folder, Delim: "/", UIDValidity: 1, UID: uid,
		InternalDate: t0, Size: int64(len(body))}
	m, err := record.MessageMsg(rec, []byte(body))
	if err != nil {
		t.Fatal(err)
	}
	ack := f.publish(t, m)
	dl := loader.DeadLetter{ID: rec.ID(), Mailbox: mailbox, TargetUser: mailbox, Folder: folder, TargetFolder: folder, UIDValidity: 1,
		UID: uid, Size: rec.Size, StreamSeq: ack.Sequence, Response: "A1 NO [LIMIT] Message too large", Code: "LIMIT",
		Reason: "Message too large", Time: t0.Add(30 * time.Minute)}
	raw, err := json.Marshal(dl)
	if err != nil {
		t.Fatal(err)
	}
	f.publish(t, &nats.Msg{Subject: subject.Dead(mailbox), Data: raw})
}

func (f *fixture) renamed(t *testing.T, mailbox string, d event.RenamedData) {
	t.Helper()
	p := event.Publisher{JS: f.b.JS, Service: "loader"}
	if err := p.Publish(testContext(t), event.Renamed(mailbox, d)); err != nil {
		t.Fatal(err)
	}
}

func (f *fixture) accounts(t *testing.T, set map[string]bool) {
	t.Helper()
	ctx := testContext(t)
	st, err := account.Open(ctx, f.b.JS, "mf_accounts", 1)
	if err != nil {
		t.Fatal(err)
	}
	for email, done := range set {
		a := &account.Account{Email: email, Domain: account.Domain(email), Role: account.RoleEmailOnly, ImportedAt: t0}
		if done {
			a.PasswordUpdatedAt = t0.Add(time.Hour)
		}
		if _, err := st.Upsert(ctx, email, func() *account.Account { return a }, func(*account.Account) error { return nil }); err != nil {
			t.Fatal(err)
		}
	}
}

// filled is a fixture holding a campaign of acme.test with everything a
// report tells, and records of another domain that it must leave out.
func filled(t *testing.T) *fixture {
	t.Helper()
	f := newFixture(t, "auth: {provider: dovecot, dovecot: {passwd_file: passwd}}\n", true)
	f.addDomain(t)
	f.apply(t, "anna@acme.test",
		campaign.MailboxQueued{Mailbox: "anna@acme.test", Pass: "p1"},
		campaign.MailboxLoaded{Mailbox: "anna@acme.test", Pass: "p1", Counts: campaign.Counts{Appended: 40, Dead: 1, Bytes: 400_000}},
		campaign.MailboxQueued{Mailbox: "anna@acme.test", Pass: "p2"},
		campaign.MailboxLoaded{Mailbox: "anna@acme.test", Pass: "p2", Counts: campaign.Counts{Appended: 2, Skipped: 40, Bytes: 2_500}},
		campaign.MailboxFailed{Mailbox: "anna@acme.test", Pass: "p2", Reason: "verification found 2 differences", At: t0.Add(3 * time.Hour)})
	f.apply(t, "zoë@acme.test",
		campaign.MailboxQueued{Mailbox: "zoë@acme.test", Pass: "p2"},
		campaign.MailboxLoaded{Mailbox: "zoë@acme.test", Pass: "p2", Counts: campaign.Counts{Appended: 5, Bytes: 1_200_000}},
		campaign.MailboxVerified{Mailbox: "zoë@acme.test", Pass: "p2"})
	f.putCheck(t, verify.MailboxReport{Source: "anna@acme.test", Target: "anna@acme.test", Messages: 42, Bytes: 402_500,
		Folders: []verify.FolderReport{
			{Sources: []string{"INBOX"}, Target: "INBOX", SourceMessages: 30, TargetMessages: 30},
			{Sources: []string{scriptFolder}, Target: "_script_alert(1)_/script_", SourceMessages: 12, TargetMessages: 12,
				Differences: []verify.Diff{
					{Kind: verify.KindMissing, Folder: scriptFolder, UID: 7, Size: 1234, SHA256: "aa",
						Header: mailscan.Header{Date: "Fri, 4 Dec 2026 09:00:00 +0100", From: "Zoë <zoe@example.org>", Subject: ampSubject, MessageID: "<m7@example.org>"}},
					{Kind: verify.KindFlags, Folder: scriptFolder, UID: 8, Size: 99, Want: `\Seen`, Got: "",
						Header: mailscan.Header{Subject: "Entwürfe"}},
				}},
		}})
	f.putCheck(t, verify.MailboxReport{Source: "zoë@acme.test", Target: "zoë@acme.test", OK: true, Messages: 5, Bytes: 1_200_000, NewAtTarget: 2,
		Folders: []verify.FolderReport{{Sources: []string{"INBOX"}, Target: "INBOX", SourceMessages: 5, TargetMessages: 7,
			NewAtTarget: []verify.Diff{{Kind: verify.KindNewAtTarget, UID: 6}, {Kind: verify.KindNewAtTarget, UID: 7}}}}})
	f.renamed(t, "anna@acme.test", event.RenamedData{Source: scriptFolder, Target: "_script_alert(1)_/script_", Reason: `level "<script>alert(1)<" contains "/"`})
	f.renamed(t, "zoë@acme.test", event.RenamedData{Source: "Gelöscht", Target: "Trash", Reason: "special-use \\Trash"})
	f.renamed(t, "carl@other.test", event.RenamedData{Source: "Junk", Target: "Spam", Reason: "special-use \\Junk"})
	f.deadLetter(t, "anna@acme.test", scriptFolder, 9, "From: Anna <anna@acme.test>\r\nSubject: =?utf-8?q?Gr=C3=BC=C3=9Fe_&_K=C3=BCsse?=\r\nDate: Thu, 3 Dec 2026 08:00:00 +0000\r\n\r\nbig\r\n")
	f.deadLetter(t, "carl@other.test", "INBOX", 1, "Subject: not of acme\r\n\r\nx\r\n")
	f.accounts(t, map[string]bool{"anna@acme.test": false, "bob@acme.test": true, "zoë@acme.test": false, "carl@other.test": false})
	return f
}

// wantJSON is the report on filled's acme.test, exactly.
const wantJSON = `{
  "domain": "acme.test",
  "generated": "2026-12-06T14:00:00Z",
  "phase": "failed",
  "stopped": "verifying",
  "reason": "verification of anna@acme.test found 2 differences",
  "started": "2026-12-06T10:01:00Z",
  "ended": "2026-12-06T13:20:00Z",
  "timeline": [
    {
      "phase": "queued",
      "entered": "2026-12-06T10:00:00Z"
    },
    {
      "phase": "provisioning",
      "entered": "2026-12-06T10:01:00Z"
    },
    {
      "phase": "prestaging",
      "entered": "2026-12-06T10:02:00Z"
    },
    {
      "phase": "switching",
      "entered": "2026-12-06T11:00:00Z"
    },
    {
      "phase": "draining",
      "entered": "2026-12-06T11:01:00Z"
    },
    {
      "phase": "delta",
      "entered": "2026-12-06T13:00:00Z"
    },
    {
      "phase": "verifying",
      "entered": "2026-12-06T13:10:00Z"
    },
    {
      "phase": "failed",
      "entered": "2026-12-06T13:20:00Z"
    }
  ],
  "dns": "switched 2026-12-06T11:01:00Z (serial 7, old TTL 300s)",
  "dns_switched_at": "2026-12-06T11:01:00Z",
  "totals": {
    "mailboxes": 3,
    "messages": 47,
    "bytes": 1602500,
    "dead": 1,
    "differences": 2,
    "accepted": 0
  },
  "mailboxes": [
    {
      "mailbox": "anna@acme.test",
      "phase": "failed",
      "reason": "verification found 2 differences",
      "messages": 42,
      "skipped": 40,
      "dead": 1,
      "bytes": 402500,
      "verification": {
        "at": "2026-12-06T13:15:00Z",
        "ok": false,
        "messages": 42,
        "bytes": 402500,
        "differences": 2
      }
    },
    {
      "mailbox": "bob@acme.test",
      "phase": "queued",
      "messages": 0,
      "skipped": 0,
      "dead": 0,
      "bytes": 0
    },
    {
      "mailbox": "zoë@acme.test",
      "phase": "verified",
      "messages": 5,
      "skipped": 0,
      "dead": 0,
      "bytes": 1200000,
      "verification": {
        "at": "2026-12-06T13:15:00Z",
        "ok": true,
        "messages": 5,
        "bytes": 1200000,
        "differences": 0,
        "new_at_target": 2
      }
    }
  ],
  "renamed": [
    {
      "mailbox": "anna@acme.test",
      "from": "\u003cscript\u003ealert(1)\u003c/script\u003e",
      "to": "_script_alert(1)_/script_",
      "reason": "level \"\u003cscript\u003ealert(1)\u003c\" contains \"/\""
    },
    {
      "mailbox": "zoë@acme.test",
      "from": "Gelöscht",
      "to": "Trash",
      "reason": "special-use \\Trash"
    }
  ],
  "differences": [
    {
      "mailbox": "anna@acme.test",
      "kind": "missing",
      "folder": "\u003cscript\u003ealert(1)\u003c/script\u003e",
      "uid": 7,
      "size": 1234,
      "date": "Fri, 4 Dec 2026 09:00:00 +0100",
      "from": "Zoë \u003czoe@example.org\u003e",
      "subject": "Q\u0026A: \u003cb\u003eGrüße\u003c/b\u003e from Zoë",
      "message_id": "\u003cm7@example.org\u003e",
      "accepted": false
    },
    {
      "mailbox": "anna@acme.test",
      "kind": "flags",
      "folder": "\u003cscript\u003ealert(1)\u003c/script\u003e",
      "uid": 8,
      "size": 99,
      "date": "",
      "from": "",
      "subject": "Entwürfe",
      "message_id": "",
      "want": "\\Seen",
      "accepted": false
    }
  ],
  "dead_letters": [
    {
      "mailbox": "anna@acme.test",
      "folder": "\u003cscript\u003ealert(1)\u003c/script\u003e",
      "uid": 9,
      "size": 125,
      "date": "Thu, 3 Dec 2026 08:00:00 +0000",
      "from": "Anna \u003canna@acme.test\u003e",
      "subject": "Grüße \u0026 Küsse",
      "reason": "Message too large",
      "response": "A1 NO [LIMIT] Message too large",
      "time": "2026-12-06T10:30:00Z"
    }
  ],
  "passwords": {
    "managed": true,
    "known": true,
    "accounts": 3,
    "set": 1,
    "pending": [
      "anna@acme.test",
      "zoë@acme.test"
    ]
  }
}
`

func TestGatherAndWriteReportEverythingOfTheDomainAndNothingElse(t *testing.T) {
	f := filled(t)
	r, err := report.Gather(testContext(t), f.cfg, f.b, f.store, "Acme.Test")
	if err != nil {
		t.Fatal(err)
	}
	r.Generated = t0.Add(4 * time.Hour)
	dir := filepath.Join(t.TempDir(), "reports", "new")
	htmlPath, jsonPath, err := report.Write(dir, r)
	if err != nil {
		t.Fatal(err)
	}
	if htmlPath != filepath.Join(dir, "acme.test.html") || jsonPath != filepath.Join(dir, "acme.test.json") {
		t.Errorf("paths %s, %s", htmlPath, jsonPath)
	}
	if h, j := report.Paths(dir, "ACME.test."); h != htmlPath || j != jsonPath {
		t.Errorf("Paths: %s, %s; Write wrote %s, %s", h, j, htmlPath, jsonPath)
	}
	got, err := os.ReadFile(jsonPath)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != wantJSON {
		t.Errorf("JSON:\n%s\nwant:\n%s", got, wantJSON)
	}
	for path, mode := range map[string]os.FileMode{dir: 0o755 | os.ModeDir, htmlPath: 0o644, jsonPath: 0o644} {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != mode {
			t.Errorf("%s: mode %v, want %v", path, fi.Mode(), mode)
		}
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 2 {
		t.Errorf("report dir holds %d files, want the two reports (no temporary file left)", len(entries))
	}
	page, err := os.ReadFile(htmlPath)
	if err != nil {
		t.Fatal(err)
	}
	checkPage(t, page, []string{
		"Mail move report for acme.test",
		"Stopped by a problem", "while checking every message", "Reason: verification of anna@acme.test found 2 differences",
		"6 December 2026, 10:01 UTC", "6 December 2026, 13:20 UTC",
		"mail for this domain goes to the new provider since 6 December 2026, 11:01 UTC",
		"DNS: switched 2026-12-06T11:01:00Z (serial 7, old TTL 300s)",
		"anna@acme.test", "zoë@acme.test", "402.5 kB", "1.6 MB",
		scriptFolder, "_script_alert(1)_/script_", "Gelöscht",
		ampSubject, "from Zoë <zoe@example.org>", "Message-ID <m7@example.org>", "not at the new provider",
		"expected \\Seen, found none",
		deadSubject, "Message too large", "A1 NO [LIMIT] Message too large",
		"2 new messages arrived at the new provider after the switch",
		"2 of 3 users still have to set a new password",
		"Entwürfe number 8 in the folder 99 bytes", "number 9 in the folder 125 bytes",
		"Planned 6 December 2026, 10:00 UTC", "Copying mail 6 December 2026, 10:02 UTC",
	}, []string{"carl@other.test", "not of acme", "Junk"})
}

func TestReportWithoutAuthOrStreamsSaysWhatIsUnknown(t *testing.T) {
	f := newFixture(t, "", false)
	f.addDomain(t)
	r, err := report.Gather(testContext(t), f.cfg, f.b, f.store, "acme.test")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"renamed folders: the events stream MF_EVENTS does not exist yet",
		"messages refused by the new provider: the dead-letter stream MF_DEAD does not exist yet",
	}
	if strings.Join(r.Unknown, "\n") != strings.Join(want, "\n") {
		t.Errorf("unknown:\n%s\nwant:\n%s", strings.Join(r.Unknown, "\n"), strings.Join(want, "\n"))
	}
	if r.Passwords.Managed || r.Passwords.Note != "passwords: not managed by this migration" {
		t.Errorf("passwords: %+v", r.Passwords)
	}
	if len(r.Mailboxes) != 3 || r.Mailboxes[0].Verification != nil || len(r.Differences) != 0 {
		t.Errorf("mailboxes %+v, differences %+v", r.Mailboxes, r.Differences)
	}
	var page bytes.Buffer
	if err := r.HTML(&page); err != nil {
		t.Fatal(err)
	}
	checkPage(t, page.Bytes(), []string{"Passwords: not managed by this migration.", "Not known yet",
		"the dead-letter stream MF_DEAD does not exist yet", "not checked yet", "No folder was renamed."}, nil)
}

func TestReportBeforeTheAuthServiceCreatedItsBucketSaysPasswordsAreUnknown(t *testing.T) {
	f := newFixture(t, "auth: {provider: dovecot, dovecot: {passwd_file: passwd}}\n", false)
	f.addDomain(t)
	r, err := report.Gather(testContext(t), f.cfg, f.b, f.store, "acme.test")
	if err != nil {
		t.Fatal(err)
	}
	const note = "the accounts bucket mf_accounts does not exist yet: the auth service creates it"
	if !r.Passwords.Managed || r.Passwords.Known || r.Passwords.Note != note || r.Unknown[len(r.Unknown)-1] != "passwords: "+note {
		t.Errorf("passwords %+v, unknown %q", r.Passwords, r.Unknown)
	}
	var page bytes.Buffer
	if err := r.HTML(&page); err != nil {
		t.Fatal(err)
	}
	checkPage(t, page.Bytes(), []string{"Who still has to set a password is not known: " + note}, nil)
}

func TestPageListsAcceptedDifferencesApartWithTheirReason(t *testing.T) {
	r := &report.Report{Domain: "acme.test", Phase: campaign.Done, Totals: report.Totals{Differences: 1, Accepted: 1},
		Differences: []report.Difference{
			{Mailbox: "a@acme.test", Kind: verify.KindAltered, Folder: "INBOX", UID: 3, Subject: "bare CR", Accepted: true, AcceptedReason: "the target drops bare CRs & that is fine"},
			{Mailbox: "a@acme.test", Kind: verify.KindMissing, Folder: "INBOX", UID: 4, Subject: "lost"},
		}}
	var page bytes.Buffer
	if err := r.HTML(&page); err != nil {
		t.Fatal(err)
	}
	checkPage(t, page.Bytes(), []string{
		"Differences 1 (listed below); 1 known and accepted",
		"lost number 4 in the folder 0 bytes not at the new provider Known differences, accepted",
		"bare CR number 3 in the folder 0 bytes stored by the new provider with small changes (line endings) accepted: the target drops bare CRs & that is fine",
		"Completed",
	}, nil)
}

func TestGatherOfADomainNotInTheCampaignFails(t *testing.T) {
	f := newFixture(t, "", false)
	_, err := report.Gather(testContext(t), f.cfg, f.b, f.store, "nowhere.test")
	if err == nil || !strings.Contains(err.Error(), campaign.ErrNoDomain.Error()) {
		t.Errorf("err %v, want one wrapping %v", err, campaign.ErrNoDomain)
	}
}

func TestWriteRefusesADomainThatIsNoFileName(t *testing.T) {
	for _, name := range []string{"", "../etc", "a/b", ".hidden"} {
		if _, _, err := report.Write(t.TempDir(), &report.Report{Domain: name}); err == nil {
			t.Errorf("Write(%q) wrote", name)
		}
	}
}

// checkPage parses page as HTML and checks it declares UTF-8, loads
// nothing (no script, no link, no src, no href leaving the page), that its
// text holds every string of has (hostile ones as text, so escaped) and
// none of hasNot.
func checkPage(t *testing.T, page []byte, has, hasNot []string) {
	t.Helper()
	doc, err := html.Parse(bytes.NewReader(page))
	if err != nil {
		t.Fatal(err)
	}
	var text strings.Builder
	charset := false
	var walk func(*html.Node)
	walk = func(n *html.Node) {
		if n.Type == html.ElementNode {
			switch n.Data {
			case "script", "link", "iframe", "img", "object", "embed":
				t.Errorf("page has a <%s> element", n.Data)
			case "meta":
				for _, a := range n.Attr {
					if a.Key == "charset" && strings.EqualFold(a.Val, "utf-8") {
						charset = true
					}
				}
			}
			for _, a := range n.Attr {
				if a.Key == "src" || a.Key == "href" || strings.HasPrefix(a.Key, "on") {
					t.Errorf("<%s> has attribute %s=%q", n.Data, a.Key, a.Val)
				}
			}
		}
		if n.Type == html.TextNode && (n.Parent == nil || n.Parent.Data != "style") {
			text.WriteString(n.Data)
			text.WriteString(" ")
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(doc)
	if !charset {
		t.Error("page does not declare <meta charset=utf-8>")
	}
	all := strings.Join(strings.Fields(text.String()), " ")
	for _, s := range has {
		if !strings.Contains(all, strings.Join(strings.Fields(s), " ")) {
			t.Errorf("page text lacks %q", s)
		}
	}
	for _, s := range hasNot {
		if strings.Contains(all, s) {
			t.Errorf("page text has %q", s)
		}
	}
	if t.Failed() {
		t.Logf("page text: %s", all)
	}
}
