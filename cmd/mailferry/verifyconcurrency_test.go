package main

import (
	"context"
	"testing"
	"time"

	"github.com/mailferry/mailferry/cmd/mailferry/verify"
	"github.com/mailferry/mailferry/shared/job"
)

// Mailboxes verified several at once are reported in the inventory's
// order, each with its own counts, and a difference in one stays its own.
func TestMailboxesVerifiedAtOnceAreReportedInTheInventorysOrder(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	env := migratedDemo(ctx, t, 5, 9)
	cfg, err := env.Config()
	if err != nil {
		t.Fatal(err)
	}
	boxes, err := job.ReadInventory(cfg.Mailboxes.File)
	if err != nil {
		t.Fatal(err)
	}
	deleteFirst(t, env, "INBOX") // in user1's target
	for _, n := range []int{1, 3, 8} {
		r := verify.Mailboxes(ctx, cfg, boxes, verify.Concurrency(n))
		if r.OK || len(r.Mailboxes) != len(boxes) {
			t.Fatalf("concurrency %d: ok %v, %d mailboxes", n, r.OK, len(r.Mailboxes))
		}
		total := 0
		for i, m := range r.Mailboxes {
			total += m.Messages
			if m.Source != boxes[i].SourceUser {
				t.Errorf("concurrency %d: report %d is %s, want %s", n, i, m.Source, boxes[i].SourceUser)
			}
			if want := i != 0; m.OK != want {
				t.Errorf("concurrency %d: %s ok = %v, want %v", n, m.Source, m.OK, want)
			}
		}
		if total != env.Messages {
			t.Errorf("concurrency %d: %d messages verified, want %d", n, total, env.Messages)
		}
	}
}
