package migrate_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/rs/zerolog"

	"github.com/mailferry/mailferry/cmd/mailferry/migrate"
	"github.com/mailferry/mailferry/shared/testenv/dovecottest"
	"github.com/mailferry/mailferry/shared/testenv/e2etest"
)

// TestAFolderRenumberedUnderTheSameUIDValidityLosesAndDuplicatesNothing
// migrates a mailbox, then renumbers two of its source folders under the
// same UIDVALIDITY, as MailEnable does when it rebuilds a folder's
// _index.xml, by rewriting Dovecot's dovecot-uidlist: "Work" (two
// messages with the same content) gets new UIDs in another order, some
// above the checkpointed one, with UIDNEXT moved up; "Archive" loses its
// two newest messages at the source and is numbered from 1 again, UIDNEXT
// backwards. Each then gets a new message, and the next pass must bring
// the new messages and nothing twice: without the check, Work's old
// messages renumbered above the checkpoint arrive again and Archive's new
// message, below the checkpoint, never does. The source advertises what
// MailEnable 4.x does and is logged in to with the user's own password.
func TestAFolderRenumberedUnderTheSameUIDValidityLosesAndDuplicatesNothing(t *testing.T) {
	p := e2etest.StartWithSource(t, 1, dovecottest.Options{
		ExtraConfig: fmt.Sprintf("imap_capability = %s\nauth_mechanisms = plain login cram-md5\n", mailEnable4),
	}, dovecottest.Options{})
	user := p.Users[0]
	rng := rand.New(rand.NewPCG(15, 5))
	twin := e2etest.Generated(rng, 1, "twin")[0]
	twin2 := twin
	twin2.Flags = []string{`\Seen`, `\Flagged`}
	// Work's last two have the same size: after the renumbering the
	// checkpointed UID holds the other one, told apart by its hash.
	sameSize := func(c string) dovecottest.Message {
		return dovecottest.Message{Body: []byte("From: a@old.example\r\nSubject: same size " + c + "\r\n\r\nbody " + c + "\r\n"), Date: time.Date(2015, 1, 2, 3, 4, 5, 0, time.UTC)}
	}
	work := append([]dovecottest.Message{twin, twin2}, e2etest.Generated(rng, 1, "work")[0], sameSize("x"), sameSize("y"))
	archive := e2etest.Generated(rng, 7, "archive")
	for folder, msgs := range map[string][]dovecottest.Message{"INBOX": e2etest.Generated(rng, 3, "inbox"), "Work": work, "Archive": archive} {
		if err := p.Src.Seed(user, folder, msgs); err != nil {
			t.Fatal(err)
		}
		if err := p.Src.Subscribe(user, folder); err != nil {
			t.Fatal(err)
		}
	}
	_, cfg := p.ConfigOwnPasswords(t, filepath.Join(p.Dir, "nats"), nil)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	migrateVerified(ctx, t, cfg)

	// Archive: the two newest deleted at the source (they stay at the
	// target), the rest numbered 1..5 in another order, UIDNEXT 6 (was 8).
	if _, err := p.Src.Doveadm(ctx, "expunge", "-u", user, "mailbox", "Archive", "uid", "6:7"); err != nil {
		t.Fatal(err)
	}
	av := renumberFolder(t, p.Src, user, "Archive", map[uint32]uint32{1: 3, 2: 5, 3: 1, 4: 2, 5: 4}, 6)
	// Work: old 1..5 at 2, 8, 9, 5, 1; UIDNEXT 10 (was 6). The twins are
	// old 1 and 2; uid 5 holds old 4 now, of the size of old 5.
	wv := renumberFolder(t, p.Src, user, "Work", map[uint32]uint32{1: 2, 2: 8, 3: 9, 4: 5, 5: 1}, 10)
	requireUIDs(t, p.Src, user, "Archive", av, map[uint32][]byte{3: archive[0].Body, 5: archive[1].Body, 1: archive[2].Body, 2: archive[3].Body, 4: archive[4].Body})
	requireUIDs(t, p.Src, user, "Work", wv, map[uint32][]byte{2: work[0].Body, 8: work[1].Body, 9: work[2].Body, 5: work[3].Body, 1: work[4].Body})

	fresh := map[string]dovecottest.Message{"Work": e2etest.Generated(rng, 1, "new work")[0], "Archive": e2etest.Generated(rng, 1, "new archive")[0]}
	for folder, m := range fresh {
		if err := p.Src.Seed(user, folder, []dovecottest.Message{m}); err != nil {
			t.Fatal(err)
		}
	}
	var logs syncBuffer
	log := zerolog.New(zerolog.MultiLevelWriter(&logs, zerolog.NewTestWriter(t))).Level(zerolog.WarnLevel)
	res, err := migrate.Run(ctx, cfg, log, migrate.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var text strings.Builder
	res.WriteText(&text)
	if !res.OK() {
		t.Fatalf("the pass after the renumbering does not verify:\n%s", text.String())
	}
	for _, f := range res.Report.Mailboxes[0].Folders {
		wantDeleted := map[string]int{"Archive": 2}[f.Target]
		if f.TargetMessages != f.SourceMessages+wantDeleted || len(f.DeletedAtSource) != wantDeleted {
			t.Errorf("%s: %d messages at the source, %d at the target, %d deleted at source; want every one once and the %d deleted kept",
				f.Target, f.SourceMessages, f.TargetMessages, len(f.DeletedAtSource), wantDeleted)
		}
	}
	// The new messages arrived, each once, and nothing else twice.
	for folder, m := range fresh {
		got := targetHashes(t, p.Tgt, user, folder)
		if n := got[sha(m.Body)]; n != 1 {
			t.Errorf("%s: the new message is at the target %d times", folder, n)
		}
		if n := got[sha(twin.Body)]; folder == "Work" && n != 2 {
			t.Errorf("Work: the two messages with the same content are at the target %d times, want 2", n)
		}
	}
	for folder, why := range map[string]string{"Work": "uid 5 holds another message of the same size", "Archive": "UIDNEXT went backwards from 8 to 7"} {
		if !strings.Contains(logs.String(), `"folder":"`+folder+`","uidvalidity":`) || !strings.Contains(logs.String(), `"why":"`+why) {
			t.Errorf("no renumbering warning for %s (%s) in:\n%s", folder, why, logs.String())
		}
	}
	if strings.Count(logs.String(), "folder renumbered") != 2 {
		t.Errorf("want one renumbering warning per renumbered folder:\n%s", logs.String())
	}
	t.Logf("report:\n%s", text.String())
}

// renumberFolder is dovecottest's Renumber, failing the test on error.
func renumberFolder(t *testing.T, s *dovecottest.Server, user, folder string, newUID map[uint32]uint32, next uint32) uint32 {
	t.Helper()
	uidv, err := s.Renumber(user, folder, newUID, next)
	if err != nil {
		t.Fatal(err)
	}
	return uidv
}

// requireUIDs fails the test unless Dovecot now serves folder's messages
// at the UIDs want names (by their bytes), under UIDVALIDITY uidv.
func requireUIDs(t *testing.T, s *dovecottest.Server, user, folder string, uidv uint32, want map[uint32][]byte) {
	t.Helper()
	c := login(t, s, user)
	defer c.Close()
	sel, err := c.Select(folder, &imap.SelectOptions{ReadOnly: true}).Wait()
	if err != nil {
		t.Fatal(err)
	}
	if sel.UIDValidity != uidv {
		t.Fatalf("%s: UIDVALIDITY %d after the renumbering, want %d", folder, sel.UIDValidity, uidv)
	}
	all := imap.UIDSet{}
	all.AddRange(1, 0)
	msgs, err := c.Fetch(all, &imap.FetchOptions{UID: true, BodySection: []*imap.FetchItemBodySection{{Peek: true}}}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	got := map[uint32]string{}
	for _, m := range msgs {
		got[uint32(m.UID)] = sha(m.FindBodySection(&imap.FetchItemBodySection{Peek: true}))
	}
	for uid, body := range want {
		if got[uid] != sha(body) {
			t.Fatalf("%s: Dovecot does not serve the renumbered message at uid %d (serves %v)", folder, uid, got)
		}
	}
	if len(got) != len(want) {
		t.Fatalf("%s: Dovecot serves %d messages, want %d", folder, len(got), len(want))
	}
}

// targetHashes counts the messages of folder at the target by SHA-256.
func targetHashes(t *testing.T, s *dovecottest.Server, user, folder string) map[string]int {
	t.Helper()
	c := login(t, s, user)
	defer c.Close()
	if _, err := c.Select(folder, &imap.SelectOptions{ReadOnly: true}).Wait(); err != nil {
		t.Fatal(err)
	}
	all := imap.SeqSet{}
	all.AddRange(1, 0)
	msgs, err := c.Fetch(all, &imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{{Peek: true}}}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	for _, m := range msgs {
		out[sha(m.FindBodySection(&imap.FetchItemBodySection{Peek: true}))]++
	}
	return out
}

func login(t *testing.T, s *dovecottest.Server, user string) *imapclient.Client {
	t.Helper()
	c, err := imapclient.DialInsecure(s.Addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Login(user+"*admin", e2etest.MasterPassword).Wait(); err != nil {
		t.Fatal(err)
	}
	return c
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// syncBuffer is a log destination the services write to concurrently.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
