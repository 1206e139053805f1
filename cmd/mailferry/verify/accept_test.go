package verify

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailferry/mailferry/shared/broker"
	"github.com/mailferry/mailferry/shared/mailscan"
	"github.com/mailferry/mailferry/shared/testenv/imaptest"
)

const box = "a@acme.test"

func named(kind, folder string, uid uint32, sha, id string) Diff {
	return Diff{Kind: kind, Folder: folder, UID: uid, SHA256: sha, Header: mailscan.Header{MessageID: id, Subject: "s" + sha}}
}

func TestAnAcceptedDifferenceMatchesByKindFolderAndHashOrMessageIDNeverByUID(t *testing.T) {
	a := Accept(box, named(KindExtra, "INBOX", 7, "h1", "<m1@x>"), "delivered twice", "ops", time.Now())
	tests := []struct {
		name    string
		mailbox string
		d       Diff
		want    bool
	}{
		{"the same difference", box, named(KindExtra, "INBOX", 7, "h1", "<m1@x>"), true},
		{"appended again under another uid", box, named(KindExtra, "INBOX", 19, "h1", "<m1@x>"), true},
		{"bytes rewritten, same Message-ID", box, named(KindExtra, "INBOX", 19, "h2", "<m1@x>"), true},
		{"same hash, no Message-ID", box, named(KindExtra, "INBOX", 19, "h1", ""), true},
		{"another message under the accepted uid", box, named(KindExtra, "INBOX", 7, "h3", "<m3@x>"), false},
		{"another message, neither with a Message-ID", box, named(KindExtra, "INBOX", 7, "h3", ""), false},
		{"another kind of the same message", box, named(KindMissing, "INBOX", 7, "h1", "<m1@x>"), false},
		{"another folder", box, named(KindExtra, "Sent", 7, "h1", "<m1@x>"), false},
		{"another mailbox", "b@acme.test", named(KindExtra, "INBOX", 7, "h1", "<m1@x>"), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := a.Matches(tt.mailbox, tt.d); got != tt.want {
				t.Errorf("Matches(%s, %+v) = %v, want %v", tt.mailbox, tt.d, got, tt.want)
			}
		})
	}
	noID := Accept(box, named(KindMissing, "INBOX", 3, "h4", ""), "r", "ops", time.Now())
	if noID.Matches(box, named(KindMissing, "INBOX", 3, "h5", "")) {
		t.Error("an acceptance without a Message-ID matches a message with other bytes and none either")
	}
}

func TestAcceptedDifferencesMoveToTheFolderAndNoLongerMakeTheMailboxDiffer(t *testing.T) {
	at := time.Date(2026, 12, 6, 4, 0, 0, 0, time.UTC)
	mr := MailboxReport{Source: box, Folders: []FolderReport{
		{Target: "INBOX", Differences: []Diff{named(KindMissing, "INBOX", 1, "h1", "<1@x>"), named(KindExtra, "INBOX", 9, "h9", "")}},
		{Target: "Sent", Differences: []Diff{named(KindFlags, "Sent", 2, "h2", "<2@x>")}},
	}}
	applyAccepted(&mr, []Accepted{
		Accept(box, named(KindMissing, "INBOX", 1, "h1", "<1@x>"), "deleted by the customer", "ops", at),
		Accept(box, named(KindFlags, "Sent", 2, "h2", "<2@x>"), "flag not kept by the target", "ops", at),
		Accept("b@acme.test", named(KindExtra, "INBOX", 9, "h9", ""), "of another mailbox", "ops", at),
	})
	if mr.Accepted != 2 || len(mr.Folders[0].Differences) != 1 || mr.Folders[0].Differences[0].Kind != KindExtra || !mr.Folders[1].OK() {
		t.Fatalf("after applying: %+v; want the missing one and the flags accepted, the extra one left", mr)
	}
	got := mr.Folders[0].Accepted[0]
	if got.Kind != KindMissing || got.UID != 1 || got.Reason != "deleted by the customer" || got.AcceptedBy != "ops" || !got.AcceptedAt.Equal(at) {
		t.Errorf("accepted %+v, want the missing message with reason, who and when", got)
	}
	var text strings.Builder
	(&Report{Mailboxes: []MailboxReport{mr}}).WriteText(&text)
	for _, want := range []string{", 2 differences accepted", `    ACCEPTED missing INBOX uid 1 sha256 h1 (deleted by the customer; accepted by "ops" at 2026-12-06T04:00:00Z)`,
		`folder [] -> "Sent"`, "    extra   INBOX uid 9"} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("text report lacks %q:\n%s", want, text.String())
		}
	}
}

func TestFiftyConcurrentAcceptancesOfOneMailboxAllLandOnceEach(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dir := t.TempDir()
	_, b := imaptest.Broker(t, ctx, "nats: {data_dir: "+filepath.Join(dir, "nats")+"}\n", dir)
	kv, err := b.JS.KeyValue(ctx, broker.BucketCampaign)
	if err != nil {
		t.Fatal(err)
	}
	const distinct = 10
	diff := func(i int) Diff { return named(KindMissing, "INBOX", uint32(i+1), fmt.Sprintf("h%d", i), "") }
	var wg sync.WaitGroup
	errs := make(chan error, 50)
	for w := range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Each accepts two differences, every one of them accepted by
			// several writers at once.
			as := []Accepted{Accept(box, diff(w%distinct), "r", "ops", time.Now()), Accept(box, diff((w+1)%distinct), "r", "ops", time.Now())}
			if _, err := StoreAccepted(ctx, kv, box, as); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	got, err := LoadAccepted(ctx, kv, box)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	for _, a := range got {
		seen[a.SHA256]++
	}
	if len(got) != distinct || len(seen) != distinct {
		t.Errorf("%d records for %d distinct differences (%v); want each once", len(got), len(seen), seen)
	}
	if added, err := StoreAccepted(ctx, kv, box, []Accepted{Accept(box, diff(3), "again", "ops", time.Now())}); err != nil || len(added) != 0 {
		t.Errorf("accepting one again: added %v, %v; want nothing added", added, err)
	}
	if _, err := StoreAccepted(ctx, kv, box, []Accepted{Accept("b@acme.test", diff(3), "r", "ops", time.Now())}); err == nil {
		t.Error("a difference of another mailbox was stored in this one's record")
	}
	if k := AcceptedKey("Ann.Lee@Acme.Test."); k != "accepted.acme=2Etest.Ann=2ELee=40Acme=2ETest=2E" {
		t.Errorf("AcceptedKey = %q", k)
	}
}
