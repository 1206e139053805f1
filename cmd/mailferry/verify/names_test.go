package verify

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver/imapmemserver"

	"github.com/mailferry/mailferry/shared/config"
	"github.com/mailferry/mailferry/shared/job"
	"github.com/mailferry/mailferry/shared/mailscan"
	"github.com/mailferry/mailferry/shared/testenv/imaptest"
)

// pair is a source and a target in memory, with the configuration and
// the inventory entry to verify them.
type pair struct {
	cfg      *config.Config
	mb       job.Mailbox
	src, tgt *imapmemserver.User
}

func newPair(t *testing.T) *pair {
	t.Helper()
	const user = "alice@example.test"
	p := &pair{src: imaptest.NewUser(t, user, "pw"), tgt: imaptest.NewUser(t, user, "pw")}
	caps := imap.CapSet{imap.CapIMAP4rev1: {}}
	srcAddr, tgtAddr := imaptest.Serve(t, p.src, caps, nil), imaptest.Serve(t, p.tgt, caps, nil)
	dir := t.TempDir()
	pw := filepath.Join(dir, "pw")
	if err := os.WriteFile(pw, []byte("pw\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse([]byte(fmt.Sprintf("source: {address: %q, tls: none, auth: user}\ntarget: {address: %q, tls: none, auth: user}\n", srcAddr, tgtAddr)), dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	p.cfg = cfg
	p.mb = job.Mailbox{SourceUser: user, TargetUser: user, SourcePasswordFile: pw, TargetPasswordFile: pw}
	return p
}

func appendTo(t *testing.T, u *imapmemserver.User, folder string, body string, at time.Time) {
	t.Helper()
	if folder != "INBOX" {
		_ = u.Create(folder, nil)
	}
	if _, err := u.Append(folder, literal{bytes.NewReader([]byte(body)), int64(len(body))}, &imap.AppendOptions{Time: at}); err != nil {
		t.Fatal(err)
	}
}

func mail(from, subject, id, text string) string {
	h := "Date: Sat, 2 Jan 2016 03:04:05 +0000\r\nFrom: " + from + "\r\nSubject: " + subject + "\r\n"
	if id != "" {
		h += "Message-ID: " + id + "\r\n"
	}
	return h + "\r\n" + text + "\r\n"
}

// TestDifferencesNameTheMessageAndNewMailAfterTheSwitchIsNotOne verifies
// a mailbox whose target lacks two messages, holds a stray copy from
// before the switch and mail delivered after it: the missing ones are
// named by their source headers (an RFC 2047 subject decoded, an absent
// Message-ID empty), the stray one by its target headers, bytes are the
// source's, and with NewAfter the new mail is new_at_target without
// making its folder differ.
func TestDifferencesNameTheMessageAndNewMailAfterTheSwitchIsNotOne(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	p := newPair(t)
	old := time.Date(2016, 1, 2, 3, 4, 5, 0, time.UTC)
	switched := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	common := mail("a@old.example", "common", "<common@old.example>", "both sides")
	koeln := mail("=?ISO-8859-1?Q?J=F6rg?= <j@old.example>", "=?UTF-8?B?R3LDvMOfZSBhdXMgS8O2bG4=?=", "<koeln@old.example>", "missing one")
	noID := mail("b@old.example", "no id", "", "missing two")
	archived := mail("c@old.example", "archived", "<archived@old.example>", "in the archive")
	stray := mail("d@elsewhere.example", "stray", "<stray@elsewhere.example>", "an old extra")
	fresh := mail("e@new.example", "after the switch", "<fresh@new.example>", "new mail")
	fresh2 := mail("f@new.example", "also after the switch", "<fresh2@new.example>", "new mail")
	for i, b := range []string{common, koeln, noID} {
		appendTo(t, p.src, "INBOX", b, old.Add(time.Duration(i)*time.Second))
	}
	appendTo(t, p.src, "Archive", archived, old)
	appendTo(t, p.tgt, "INBOX", common, old)
	appendTo(t, p.tgt, "INBOX", stray, old.Add(time.Hour))
	appendTo(t, p.tgt, "INBOX", fresh, switched.Add(time.Minute))
	appendTo(t, p.tgt, "Archive", archived, old)
	appendTo(t, p.tgt, "Archive", fresh2, switched.Add(time.Hour))

	type named struct {
		kind, folder string
		size         int
		mailscan.Header
	}
	hdr := func(from, subject, id string) mailscan.Header {
		return mailscan.Header{Date: "Sat, 2 Jan 2016 03:04:05 +0000", From: from, Subject: subject, MessageID: id}
	}
	missingKoeln := named{"missing", "INBOX", len(koeln), hdr("Jörg <j@old.example>", "Grüße aus Köln", "<koeln@old.example>")}
	missingNoID := named{"missing", "INBOX", len(noID), hdr("b@old.example", "no id", "")}
	extraStray := named{"extra", "INBOX", len(stray), hdr("d@elsewhere.example", "stray", "<stray@elsewhere.example>")}
	extraFresh := named{"extra", "INBOX", len(fresh), hdr("e@new.example", "after the switch", "<fresh@new.example>")}
	extraFresh2 := named{"extra", "Archive", len(fresh2), hdr("f@new.example", "also after the switch", "<fresh2@new.example>")}
	newFresh, newFresh2 := extraFresh, extraFresh2
	newFresh.kind, newFresh2.kind = "new_at_target", "new_at_target"

	tests := []struct {
		name              string
		opts              []Option
		differences, news []named
		archiveOK         bool
	}{
		{"source = target", nil, []named{extraFresh2, missingKoeln, missingNoID, extraStray, extraFresh}, nil, false},
		{"source in target since the switch", []Option{NewAfter(switched)}, []named{missingKoeln, missingNoID, extraStray}, []named{newFresh2, newFresh}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := Mailbox(ctx, p.cfg, p.mb, tt.opts...)
			if r.Error != "" || len(r.Folders) != 2 {
				t.Fatalf("report %+v", r)
			}
			wantBytes := int64(len(common) + len(koeln) + len(noID) + len(archived))
			if r.OK || r.Messages != 4 || r.Bytes != wantBytes {
				t.Errorf("ok %v, %d messages, %d bytes; want a difference, 4 messages and %d bytes", r.OK, r.Messages, r.Bytes, wantBytes)
			}
			if a := r.Folders[0]; a.Target != "Archive" || a.OK() != tt.archiveOK || a.SourceBytes != int64(len(archived)) {
				t.Errorf("Archive: ok %v, source bytes %d; want ok %v and %d bytes", a.OK(), a.SourceBytes, tt.archiveOK, len(archived))
			}
			var diffs, news []named
			for _, f := range r.Folders {
				for _, d := range f.Differences {
					diffs = append(diffs, named{d.Kind, d.Folder, int(d.Size), d.Header})
				}
				for _, d := range f.NewAtTarget {
					news = append(news, named{d.Kind, d.Folder, int(d.Size), d.Header})
				}
			}
			sortNamed := func(ns []named) {
				slices.SortFunc(ns, func(a, b named) int { return strings.Compare(a.folder+a.kind+a.Subject, b.folder+b.kind+b.Subject) })
			}
			for _, ns := range [][]named{diffs, news, tt.differences, tt.news} {
				sortNamed(ns)
			}
			if !slices.Equal(diffs, tt.differences) {
				t.Errorf("differences\n%+v\nwant\n%+v", diffs, tt.differences)
			}
			if !slices.Equal(news, tt.news) {
				t.Errorf("new at target\n%+v\nwant\n%+v", news, tt.news)
			}
			if (r.NewAfter != nil) != (len(tt.opts) > 0) || r.NewAtTarget != len(tt.news) {
				t.Errorf("new after %v, %d new at target; want %d", r.NewAfter, r.NewAtTarget, len(tt.news))
			}
			var text strings.Builder
			(&Report{Mailboxes: []MailboxReport{r}}).WriteText(&text)
			for _, s := range []string{`subject "Grüße aus Köln"`, `from "Jörg <j@old.example>"`, "message-id -", fmt.Sprintf("(%d B)", wantBytes)} {
				if !strings.Contains(text.String(), s) {
					t.Errorf("text report lacks %q:\n%s", s, text.String())
				}
			}
		})
	}

	// Mail new at target alone leaves a mailbox OK.
	q := newPair(t)
	appendTo(t, q.src, "INBOX", common, old)
	appendTo(t, q.tgt, "INBOX", common, old)
	appendTo(t, q.tgt, "INBOX", fresh, switched.Add(time.Minute))
	if r := Mailbox(ctx, q.cfg, q.mb, NewAfter(switched)); !r.OK || r.NewAtTarget != 1 {
		t.Errorf("only new mail at target after the switch: ok %v, %d new; want ok and 1: %+v", r.OK, r.NewAtTarget, r)
	}
	if r := Mailbox(ctx, q.cfg, q.mb, NewAfter(switched.Add(time.Hour))); r.OK {
		t.Errorf("mail at target from before the switch is not a difference: %+v", r)
	}
}
