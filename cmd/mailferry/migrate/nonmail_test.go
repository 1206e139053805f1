package migrate_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mailferry/mailferry/cmd/mailferry/migrate"
	"github.com/mailferry/mailferry/cmd/mailferry/status"
	"github.com/mailferry/mailferry/services/loader"
	"github.com/mailferry/mailferry/shared/broker"
	"github.com/mailferry/mailferry/shared/config"
	"github.com/mailferry/mailferry/shared/event"
	"github.com/mailferry/mailferry/shared/job"
	"github.com/mailferry/mailferry/shared/kvjson"
	"github.com/mailferry/mailferry/shared/subject"
	"github.com/mailferry/mailferry/shared/testenv/dovecottest"
	"github.com/mailferry/mailferry/shared/testenv/e2etest"
)

// mailEnable10 is what MailEnable 10.x advertises, less its AUTH=
// mechanisms (auth_mechanisms sets those).
const mailEnable10 = "IMAP4rev1 IMAP4 CHILDREN IDLE XLIST UIDPLUS SPECIAL-USE"

// item is a message as MailEnable serves a contact, calendar or task item
// of its store: the bare object, no header section.
func item(s string) dovecottest.Message {
	return dovecottest.Message{Body: []byte(strings.ReplaceAll(s, "\n", "\r\n")), Date: time.Date(2024, 3, 1, 9, 0, 0, 0, time.UTC)}
}

func vcardOf(name string) dovecottest.Message {
	return item(fmt.Sprintf("BEGIN:VCARD\nVERSION:3.0\nN:%s;;;;\nFN:%s\nEMAIL;TYPE=INTERNET:%s@example.com\nEND:VCARD\n", name, name, strings.ToLower(name)))
}

// TestContactsAndCalendarItemsAreReportedByNameNotCopiedAsMail migrates
// a MailEnable-like source whose Contacts and Calendar folders, and
// INBOX, hold bare vCard and calendar items beside mail (an invitation
// with a text/calendar body and a mail carrying a vCard among it; a
// contact with a photo larger than large_message_bytes): the
// items are not appended, the verification is clean and lists each item
// by folder and UID as not mail, not copied; every mail arrives. A second
// run after new mail reached INBOX (whose last message was an item)
// copies the new mail and again verifies clean.
func TestContactsAndCalendarItemsAreReportedByNameNotCopiedAsMail(t *testing.T) {
	p := e2etest.StartWithSource(t, 1, dovecottest.Options{
		ExtraConfig: "imap_capability = " + mailEnable10 + "\nauth_mechanisms = plain login cram-md5\n",
	}, dovecottest.Options{})
	u := p.Users[0]
	rng := rand.New(rand.NewPCG(6, 15))
	invitation := item("From: John Doe <john@example.com>\nTo: " + u + "\nSubject: Invitation: Dentist\n" +
		"Date: Mon, 5 Jan 2026 08:00:00 +0000\nMessage-ID: <inv-1@example.com>\nMIME-Version: 1.0\n" +
		"Content-Type: text/calendar; method=REQUEST; charset=UTF-8\n\nBEGIN:VCALENDAR\nMETHOD:REQUEST\nBEGIN:VEVENT\nSUMMARY:Dentist\nEND:VEVENT\nEND:VCALENDAR\n")
	card := item("From: Jane <jane@example.com>\nTo: " + u + "\nSubject: my card\nDate: Mon, 5 Jan 2026 09:00:00 +0000\n" +
		"Content-Type: text/vcard\n\nBEGIN:VCARD\nVERSION:3.0\nFN:Jane\nEND:VCARD\n")
	inbox := append(e2etest.Generated(rng, 2, "a"), invitation, vcardOf("Stray"), card)
	inbox = append(inbox, e2etest.Generated(rng, 1, "b")...)
	inbox = append(inbox, vcardOf("Last")) // the folder ends with an item
	seeds := map[string][]dovecottest.Message{
		"INBOX": inbox,
		// Bob's photo makes his card larger than large_message_bytes:
		// read through, never stored in the object store.
		"Contacts": {vcardOf("Alice"), item("BEGIN:VCARD\nVERSION:3.0\nFN:Bob\nPHOTO;ENCODING=b;TYPE=JPEG:" + strings.Repeat("QUJD", 150_000) + "\nEND:VCARD\n")},
		"Calendar": {
			item("BEGIN:VCALENDAR\nVERSION:2.0\nBEGIN:VEVENT\nUID:1\nDTSTART:20260105T090000Z\nSUMMARY:Dentist\nEND:VEVENT\nEND:VCALENDAR\n"),
			item("BEGIN:VCALENDAR\nVERSION:1.0\nBEGIN:VTODO\nSUMMARY:Renew the domain\nEND:VTODO\nEND:VCALENDAR\n"),
		},
	}
	if len(seeds["Contacts"][1].Body) <= 512<<10 {
		t.Fatalf("Bob's card is %d bytes, not larger than the default large_message_bytes", len(seeds["Contacts"][1].Body))
	}
	for f, msgs := range seeds {
		if err := p.Src.Seed(u, f, msgs); err != nil {
			t.Fatal(err)
		}
	}
	_, cfg := p.ConfigOwnPasswords(t, filepath.Join(p.Dir, "nats"), nil)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	res := migrateVerified(ctx, t, cfg)
	var b strings.Builder
	res.WriteText(&b)
	report := b.String()
	wantItems := []string{
		"not mail, not copied: INBOX uid 4: contact item",
		"not mail, not copied: INBOX uid 7: contact item",
		"not mail, not copied: Contacts uid 1: contact item",
		"not mail, not copied: Contacts uid 2: contact item",
		"not mail, not copied: Calendar uid 1: event item",
		"not mail, not copied: Calendar uid 2: task item",
		"6 not mail, not copied",
	}
	for _, w := range wantItems {
		if !strings.Contains(report, w) {
			t.Errorf("report lacks %q:\n%s", w, report)
		}
	}
	if mr := res.Report.Mailboxes[0]; mr.NotMail != 6 || mr.Messages != 5 {
		t.Errorf("report: %d messages, %d not mail; want 5 and 6:\n%s", mr.Messages, mr.NotMail, report)
	}
	counts, err := p.Tgt.MessageCounts(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	if counts["INBOX"] != 5 || counts["Contacts"] != 0 || counts["Calendar"] != 0 {
		t.Errorf("target holds %v, want INBOX 5 (the mail, the invitation and the mail with a card among it) and no item", counts)
	}

	// Ops see them: the extraction's end record (the mailbox.extracted
	// event) names each; status counts them from the loader's ledger.
	extracted, st, inbox1 := readBack(ctx, t, cfg, u)
	if len(extracted.NotMail) != 6 {
		t.Errorf("the extracted event names %d items, want 6: %+v", len(extracted.NotMail), extracted.NotMail)
	}
	named := map[string]string{}
	for _, it := range extracted.NotMail {
		named[fmt.Sprintf("%s/%d", it.Folder, it.UID)] = it.Kind
	}
	if named["INBOX/4"] != "contact" || named["Contacts/2"] != "contact" || named["Calendar/2"] != "task" || extracted.Messages != 5 {
		t.Errorf("the extracted event says %d messages and names %v", extracted.Messages, named)
	}
	if m := st.Mailboxes[0]; m.NotMail != 6 || m.Loaded != 5 {
		t.Errorf("status: %d loaded, %d not mail; want 5 and 6", m.Loaded, m.NotMail)
	}
	// The loader's watermark passed the items, the last one included.
	if inbox1.LastUID != 7 || len(inbox1.Done) != 0 || inbox1.NotMail != 2 {
		t.Errorf("INBOX in the loader's ledger: last UID %d, done %v, not mail %d; want 7, none, 2", inbox1.LastUID, inbox1.Done, inbox1.NotMail)
	}

	// New mail after the item that ended INBOX: the extractor resumes
	// from the item's UID, the loader's chain passes it.
	if err := p.Src.Seed(u, "INBOX", e2etest.Generated(rng, 2, "c")); err != nil {
		t.Fatal(err)
	}
	res2, err := migrate.Run(ctx, cfg, e2etest.Logger(t), migrate.Options{})
	if err != nil {
		t.Fatal(err)
	}
	b.Reset()
	res2.WriteText(&b)
	if !res2.OK() {
		t.Fatalf("second run not verified:\n%s", b.String())
	}
	if counts, err = p.Tgt.MessageCounts(ctx, u); err != nil {
		t.Fatal(err)
	}
	if counts["INBOX"] != 7 {
		t.Errorf("target INBOX holds %d after the second run, want 7", counts["INBOX"])
	}
	_, st, inbox2 := readBack(ctx, t, cfg, u)
	if st.Mailboxes[0].NotMail != 6 || st.Mailboxes[0].Loaded != 7 {
		t.Errorf("status after the second run: %d loaded, %d not mail; want 7 and 6", st.Mailboxes[0].Loaded, st.Mailboxes[0].NotMail)
	}
	// The new mail's chain began at the item: the watermark reached it.
	if inbox2.LastUID != 9 || len(inbox2.Done) != 0 {
		t.Errorf("INBOX in the loader's ledger after the second run: last UID %d, done %v; want 9, none", inbox2.LastUID, inbox2.Done)
	}
	t.Logf("second run:\n%s", b.String())
}

// readBack opens the migration's broker (migrate.Run has ended) and reads
// the latest mailbox.extracted event of user, the status, and the
// loader's ledger entry of the user's INBOX.
func readBack(ctx context.Context, t *testing.T, cfg *config.Config, user string) (event.ExtractedData, *status.Status, loader.FolderState) {
	t.Helper()
	b, err := broker.Connect(ctx, cfg.NATS, "test", e2etest.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if err := b.Use(ctx, broker.Needs{Writes: []string{broker.StreamEvents, broker.BucketProgress, broker.BucketLedger}}); err != nil {
		t.Fatal(err)
	}
	st, err := status.Read(ctx, b, []job.Mailbox{{SourceUser: user, TargetUser: user}})
	if err != nil {
		t.Fatal(err)
	}
	stream, err := b.JS.Stream(ctx, broker.StreamEvents)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := stream.GetLastMsgForSubject(ctx, subject.Event(event.MailboxExtracted, user))
	if err != nil {
		t.Fatal(err)
	}
	e, err := event.Decode(raw.Data)
	if err != nil {
		t.Fatal(err)
	}
	var d event.ExtractedData
	if err := e.DataAs(&d); err != nil {
		t.Fatal(err)
	}
	var inbox loader.FolderState
	for _, f := range d.Folders {
		if f.Name != "INBOX" {
			continue
		}
		ent, err := kvjson.Get[loader.FolderState](ctx, b.Ledger, loader.FolderKey(user, "INBOX", f.UIDValidity, f.Epoch))
		if err != nil {
			t.Fatal(err)
		}
		inbox = ent.V
	}
	return d, st, inbox
}
