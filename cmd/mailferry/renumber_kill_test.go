package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mailferry/mailferry/shared/testenv/dovecottest"
	"github.com/mailferry/mailferry/shared/testenv/e2etest"
	"github.com/mailferry/mailferry/shared/testenv/proc"
)

// TestARenumberedFolderStaysExactThroughKillsOfItsNewExtraction migrates
// a mailbox from a source configured like MailEnable 4.x, renumbers its
// big folder under the same UIDVALIDITY (as MailEnable does when it
// rebuilds the folder's _index.xml: every UID new, in reverse order, all
// above the checkpoint) and adds new mail; then the whole `mailferry
// migrate` process is killed with SIGKILL at random moments of the pass
// that extracts the folder again under a new numbering and matches it by
// content, five times; the run after that verifies, and the target holds
// every source message once: a crash between an append and its ledger
// entry in a folder matched by content must not append it again.
func TestARenumberedFolderStaysExactThroughKillsOfItsNewExtraction(t *testing.T) {
	bin, err := mailferryBinary()
	if err != nil {
		t.Fatal(err)
	}
	p := e2etest.StartWithSource(t, 1, dovecottest.Options{
		ExtraConfig: "imap_capability = IMAP4rev1 IMAP4 CHILDREN IDLE AUTH=LOGIN AUTH=CRAM-MD5\nauth_mechanisms = plain login cram-md5\n",
	}, dovecottest.Options{})
	user := p.Users[0]
	rng := rand.New(rand.NewPCG(15, 55))
	const n = 800
	work := e2etest.Generated(rng, n, "work")
	for i := range 4 {
		work[rng.IntN(n)].Body = e2etest.BigMessage(1<<20+i, fmt.Sprintf("big %d", i))
	}
	work[7] = work[3] // two messages with the same content
	for folder, msgs := range map[string][]dovecottest.Message{"INBOX": e2etest.Generated(rng, 5, "inbox"), "Work": work} {
		if err := p.Src.Seed(user, folder, msgs); err != nil {
			t.Fatal(err)
		}
		if err := p.Src.Subscribe(user, folder); err != nil {
			t.Fatal(err)
		}
	}
	conf, _ := p.ConfigOwnPasswords(t, filepath.Join(p.Dir, "nats"), nil)
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	if out, err := cli(t, ctx, "migrate", "-c", conf); err != nil {
		t.Fatalf("first migration: %v\n%s", err, out)
	}

	renumber := map[uint32]uint32{}
	for old := uint32(1); old <= n; old++ {
		renumber[old] = 2*n + 1 - old
	}
	if _, err := p.Src.Renumber(user, "Work", renumber, 2*n+1); err != nil {
		t.Fatal(err)
	}
	if err := p.Src.Seed(user, "Work", e2etest.Generated(rng, 5, "after the renumbering")); err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		run, err := proc.Start(bin, []string{"migrate", "-c", conf}, proc.Options{Dir: p.Dir})
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			// The first kill lands inside the new extraction: once the
			// renumbering is found, before the folder is read again.
			waitOutput(t, run, "folder renumbered", 30*time.Second)
		}
		after := time.Duration(100+rng.IntN(800)) * time.Millisecond
		select {
		case <-run.Exited():
			t.Logf("run %d ended by itself before its kill: %v", i+1, run.ExitErr())
		case <-time.After(after):
			run.Kill()
			<-run.Exited()
			t.Logf("run %d killed after %s", i+1, after)
		}
	}
	out, err := cli(t, ctx, "migrate", "-c", conf)
	if err != nil {
		t.Fatalf("the run after the kills: %v\n%s", err, out)
	}
	if !strings.Contains(out, fmt.Sprintf("%d messages", n+5+5)) {
		t.Errorf("the run after the kills does not account for every message:\n%s", out)
	}
	src, err := p.Src.MessageCounts(ctx, user)
	if err != nil {
		t.Fatal(err)
	}
	tgt, err := p.Tgt.MessageCounts(ctx, user)
	if err != nil {
		t.Fatal(err)
	}
	if src["Work"] != n+5 || tgt["Work"] != src["Work"] || tgt["INBOX"] != src["INBOX"] {
		t.Errorf("messages at the source %v, at the target %v: want Work's %d once each", src, tgt, n+5)
	}
}

// waitOutput waits until the process has written want, or fails the
// test after timeout.
func waitOutput(t *testing.T, p *proc.Process, want string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !strings.Contains(p.Output(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("%s did not say %q within %s:\n%s", p.Name, want, timeout, p.Output())
		}
		select {
		case <-p.Exited():
			t.Fatalf("%s exited before saying %q: %v\n%s", p.Name, want, p.ExitErr(), p.Output())
		case <-time.After(20 * time.Millisecond):
		}
	}
}
