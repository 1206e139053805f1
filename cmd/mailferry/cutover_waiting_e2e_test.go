package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mailferry/mailferry/cmd/mailferry/cutover"
	"github.com/mailferry/mailferry/cmd/mailferry/cutover/report"
	"github.com/mailferry/mailferry/cmd/mailferry/status"
	"github.com/mailferry/mailferry/shared/broker"
	"github.com/mailferry/mailferry/shared/campaign"
	"github.com/mailferry/mailferry/shared/sourcecred"
	"github.com/mailferry/mailferry/shared/testenv/proc"
	"github.com/mailferry/mailferry/shared/testenv/syncbuf"
)

// TestAMailboxWaitingForItsUserDoesNotHoldUpItsDomainsCutover runs a
// campaign on the real peers with per-user source logins, where bob's
// source password is unknown until he signs in on the change page: his
// domain alpha.test is copied, switched and done without him (its delta
// pass tries him again), cutover status, status and the domain's report
// name him as waiting for his user, nothing was copied of his mailbox and
// no login to it was tried.
func TestAMailboxWaitingForItsUserDoesNotHoldUpItsDomainsCutover(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	w := newCampaignWorld(t, campaign.OrderPrestage, false, "", false)
	const waiting = "bob@alpha.test"
	w.perUserLogins(t, waiting)

	out, err := w.cli(ctx, t, "cutover", "start", "-all")
	if err != nil || !strings.Contains(out, "alpha.test: done") {
		t.Fatalf("cutover start: %v, want every domain done, alpha.test with it\n%s", err, out)
	}
	if !w.switched(ctx, "alpha.test") {
		t.Error("alpha.test's MX was not switched")
	}
	out, err = w.cli(ctx, t, "cutover", "status", "-json")
	if err != nil {
		t.Fatal(err)
	}
	var st cutover.Status
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("cutover status -json: %v\n%s", err, out)
	}
	if !slices.Equal(st.WaitingForUser, []string{waiting}) {
		t.Errorf("cutover status: waiting for their user %q, want bob", st.WaitingForUser)
	}
	for _, d := range st.Domains {
		if d.Phase != campaign.Done {
			t.Errorf("%s: %s (%s), want done", d.Domain, d.Phase, d.Reason)
		}
		if d.Domain == "alpha.test" && !slices.Equal(d.WaitingForUser, []string{waiting}) {
			t.Errorf("alpha.test: waiting for their user %q, want bob", d.WaitingForUser)
		}
		for _, m := range d.Mailboxes {
			switch {
			case m.Mailbox == waiting && (!m.WaitingForUser || m.Messages != 0):
				t.Errorf("bob: %s, waiting %v, %d messages; want waiting, none copied", m.Phase, m.WaitingForUser, m.Messages)
			case m.Mailbox != waiting && (m.Phase != campaign.BoxVerified || m.Messages != int64(w.seeded[m.Mailbox])):
				t.Errorf("%s: %s, %d messages; want verified, %d", m.Mailbox, m.Phase, m.Messages, w.seeded[m.Mailbox])
			}
		}
	}
	text, err := w.cli(ctx, t, "cutover", "status")
	if err != nil || !strings.Contains(text, "done; waiting for their user (copied when they sign in): bob@alpha.test") {
		t.Errorf("cutover status: %v, want alpha.test done with bob waiting\n%s", err, text)
	}
	out, err = w.cli(ctx, t, "status", "-json")
	if err != nil {
		t.Fatal(err)
	}
	var overall status.Status
	if err := json.Unmarshal([]byte(out), &overall); err != nil {
		t.Fatalf("status -json: %v\n%s", err, out)
	}
	if !slices.Equal(overall.WaitingForUser, []string{waiting}) {
		t.Errorf("status: waiting for their user %q, want bob", overall.WaitingForUser)
	}
	raw, err := os.ReadFile(filepath.Join(w.dir, "reports", "alpha.test.json"))
	if err != nil {
		t.Fatal(err)
	}
	var rep report.Report
	if err := json.Unmarshal(raw, &rep); err != nil {
		t.Fatal(err)
	}
	if rep.Phase != campaign.Done || !slices.Equal(rep.WaitingForUser, []string{waiting}) {
		t.Errorf("report: %s, waiting for their user %q; want done, bob", rep.Phase, rep.WaitingForUser)
	}
	page, err := os.ReadFile(filepath.Join(w.dir, "reports", "alpha.test.html"))
	if err != nil || !strings.Contains(string(page), "waiting for their user: copied when they sign in") {
		t.Errorf("report page: %v, does not name bob as waiting for his user", err)
	}
	// No login was tried with a password bob's server does not know (a
	// lockout risk): not by the extractor, not by verify.
	if log := w.src.LogTail(100000); strings.Contains(log, "<"+waiting+">") || !strings.Contains(log, "user=<anna@alpha.test>") {
		t.Errorf("the source's log names bob, or not anna:\n%s", log)
	}
	counts, err := w.tgt.MessageCounts(ctx, waiting)
	if err != nil {
		t.Fatal(err)
	}
	for folder, n := range counts {
		if n != 0 {
			t.Errorf("bob's new mailbox holds %d messages in %s, want none copied", n, folder)
		}
	}
}

// perUserLogins makes w's source logins per user, with the password file
// of every mailbox but waiting's, whose password is unknown until its
// user signs in (a source.credential_key_file for what users hand over).
func (w *campaignWorld) perUserLogins(t *testing.T, waiting string) {
	t.Helper()
	write := func(name, text string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(w.dir, name), []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	var csv strings.Builder
	csv.WriteString("source_user,target_user,source_password_file\n")
	for i, u := range w.boxes {
		file := ""
		if u != waiting {
			file = u + ".pw"
			write(file, fmt.Sprintf("pw-%d\n", i))
		}
		fmt.Fprintf(&csv, "%s,%s,%s\n", u, u, file)
	}
	write("mailboxes.csv", csv.String())
	write("source-credential.key", sourcecred.NewKeyText()+"\n")
	conf, err := os.ReadFile(w.config)
	if err != nil {
		t.Fatal(err)
	}
	source := regexp.MustCompile(`(?m)^source: \{address: ([^,]+), .*\}$`)
	if !source.Match(conf) {
		t.Fatalf("no source line in\n%s", conf)
	}
	write("mailferry.yaml", source.ReplaceAllString(string(conf), "source: {address: $1, tls: none, auth: user, credential_key_file: source-credential.key, command_timeout: 20s}"))
}

// TestAUserWhoSignsInBeforeTheDeltaPassIsCopiedByIt runs the campaign as
// deployed (nats-server with deploy/nats's users, the services and the
// orchestrator as processes of their own): bob's prestage pass waits for
// his user, his domain switches without him, and his password handed over
// while the domain drains (as the change page does at his sign-in) lets
// the delta pass copy and verify him with the others: the domain is done
// with nobody waiting, his credential deleted.
func TestAUserWhoSignsInBeforeTheDeltaPassIsCopiedByIt(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	bin, err := mailferryBinary()
	if err != nil {
		t.Fatal(err)
	}
	u := startUsersBroker(t)
	natsConf := fmt.Sprintf("nats: {url: %s, user: operator, password_file: %s}", u.url, u.passwordFile("operator"))
	w := newCampaignWorld(t, campaign.OrderPrestage, false, natsConf, false)
	const waiting = "bob@alpha.test"
	w.perUserLogins(t, waiting)
	d := &daemons{t: t, bin: bin, w: w, users: u, seen: map[campaign.Phase]bool{}}
	for _, svc := range []string{"extractor", "loader", "dnsctl"} {
		d.start(svc)
	}
	d.orch = []*proc.Process{d.start("cutover", "run")}
	if out, err := w.cli(ctx, t, "cutover", "start", "-all"); err != nil {
		t.Fatalf("cutover start: %v\n%s", err, out)
	}
	// The auth service's broker user hands the password over.
	auth := u.connect(t, "auth", &syncbuf.Buffer{})
	if err := auth.Use(ctx, broker.Needs{Writes: []string{broker.BucketSourceCredentials}}); err != nil {
		t.Fatal(err)
	}
	keyText, err := os.ReadFile(filepath.Join(w.dir, "source-credential.key"))
	if err != nil {
		t.Fatal(err)
	}
	key, err := sourcecred.ParseKey(keyText)
	if err != nil {
		t.Fatal(err)
	}
	store := openStore(ctx, t, w)
	signedIn := false
	for {
		if ctx.Err() != nil {
			t.Fatalf("campaign did not end: %v\norchestrator:\n%s", ctx.Err(), tail(d.orch[0].Output(), 30))
		}
		a := phaseOf(ctx, t, store, "alpha.test")
		switch {
		case a.Phase == campaign.Failed:
			t.Fatalf("alpha.test failed in %s: %s", a.Stopped, a.Reason)
		case !signedIn && (a.Phase == campaign.Switching || a.Phase == campaign.Draining):
			if !slices.Equal(a.Waiting, []string{waiting}) {
				t.Fatalf("alpha.test %s after its prestage pass: waiting %q, want bob", a.Phase, a.Waiting)
			}
			kv, err := sourcecred.Bind(ctx, auth.JS)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := (&sourcecred.Store{KV: kv, Key: key}).HandOff(ctx, waiting, "pw-1"); err != nil {
				t.Fatal(err)
			}
			signedIn = true
		case !signedIn && a.Phase != campaign.Queued && a.Phase != campaign.Provisioning && a.Phase != campaign.Prestaging:
			t.Fatalf("alpha.test went on to %s before bob could sign in", a.Phase)
		}
		if domains, err := store.List(ctx, ""); err == nil && allIn(domains, campaign.Done) && d.finished(map[string]campaign.Domain{"alpha.test": a}) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	a := phaseOf(ctx, t, store, "alpha.test")
	if len(a.Waiting) != 0 || !slices.Contains(a.Verified, waiting) {
		t.Errorf("alpha.test done: waiting %q, verified %q; want none waiting, bob verified", a.Waiting, a.Verified)
	}
	boxes, err := store.Mailboxes(ctx, "alpha.test")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range boxes {
		if m.Phase != campaign.BoxVerified || m.Counts.Appended != int64(w.seeded[m.Mailbox]) {
			t.Errorf("%s: %s (pass %s), %d messages copied; want verified, %d", m.Mailbox, m.Phase, m.Pass, m.Counts.Appended, w.seeded[m.Mailbox])
		}
	}
	kv, err := sourcecred.Bind(ctx, auth.JS)
	if err != nil {
		t.Fatal(err)
	}
	if has, err := sourcecred.Has(ctx, kv, waiting); err != nil || has {
		t.Errorf("bob's credential kept after his domain is done (%v)", err)
	}
	for _, p := range d.all {
		if strings.Contains(p.Output(), "Permissions Violation") {
			t.Errorf("the broker refused a daemon something:\n%s", p.Output())
		}
	}
}
