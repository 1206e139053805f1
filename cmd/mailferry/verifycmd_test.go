package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/rs/zerolog"

	"github.com/mailferry/mailferry/cmd/mailferry/demo"
	"github.com/mailferry/mailferry/cmd/mailferry/verify"
	"github.com/mailferry/mailferry/shared/broker"
	"github.com/mailferry/mailferry/shared/command"
	"github.com/mailferry/mailferry/shared/config"
	"github.com/mailferry/mailferry/shared/event"
	"github.com/mailferry/mailferry/shared/job"
	"github.com/mailferry/mailferry/shared/testenv/dovecottest"
	"github.com/mailferry/mailferry/shared/testenv/e2etest"
)

// verifyCLI runs verify with args and decodes its JSON report.
func verifyCLI(t *testing.T, ctx context.Context, args ...string) (verify.Report, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	err := run(ctx, "verify", append(args, "-json"), &out, &errOut)
	var r verify.Report
	if jerr := json.Unmarshal(out.Bytes(), &r); jerr != nil {
		t.Fatalf("verify %v: %v, %v\n%s\n%s", args, err, jerr, out.String(), errOut.String())
	}
	return r, err
}

func TestVerifyMailboxVerifiesThatMailboxAloneAndCountsItsBytes(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	env := startDemo(ctx, t, 2, 11)

	// Nothing was migrated: every source message is missing, named.
	r, err := verifyCLI(t, ctx, "-c", env.ConfigPath, "-mailbox", "user2@example.test")
	if !errors.Is(err, errDifferent) || len(r.Mailboxes) != 1 || r.Mailboxes[0].Source != "user2@example.test" {
		t.Fatalf("verify -mailbox user2: err %v, report %+v; want user2 alone, different", err, r)
	}
	m := r.Mailboxes[0]
	var sum int64
	var n, noID int
	for _, f := range m.Folders {
		var folder int64
		for _, d := range f.Differences {
			if d.Kind != "missing" || d.Size <= 0 || d.Subject == "" || d.From == "" || d.Date == "" {
				t.Errorf("difference %+v: want a missing message named by size, Date, From and Subject", d)
			}
			if d.MessageID == "" {
				noID++
			}
			folder += d.Size
			n++
		}
		if f.SourceBytes != folder {
			t.Errorf("folder %q: %d source bytes, its messages sum to %d", f.Target, f.SourceBytes, folder)
		}
		sum += folder
	}
	if m.Bytes == 0 || m.Bytes != sum || m.Messages != n {
		t.Errorf("%d messages, %d bytes; want %d messages and %d bytes, the sum of their sizes", m.Messages, m.Bytes, n, sum)
	}
	if noID == 0 || noID == n {
		t.Errorf("%d of %d messages without Message-ID; the demo leaves it out of some", noID, n)
	}

	// The whole inventory's bytes are the demo's.
	r, _ = verifyCLI(t, ctx, "-c", env.ConfigPath)
	var all int64
	for _, m := range r.Mailboxes {
		all += m.Bytes
	}
	if len(r.Mailboxes) != 2 || all != env.Bytes {
		t.Errorf("%d mailboxes, %d bytes; want 2 and %d", len(r.Mailboxes), all, env.Bytes)
	}

	code, out, errOut := mailferry(t, "verify", "-c", env.ConfigPath, "-mailbox", "nobody@example.test")
	if code != 2 || out != "" || !strings.HasPrefix(errOut, "mailferry: verify: -mailbox nobody@example.test is not a source mailbox") {
		t.Errorf("verify -mailbox of an unknown mailbox: exit %d, stdout %q, stderr %q; want 2 and the mailbox named", code, out, errOut)
	}
}

func TestVerifySinceSwitchCountsMailDeliveredAfterTheSwitchAsNew(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	env := migratedDemo(ctx, t, 1, 13)
	switched := time.Now().UTC().Add(-time.Hour).Truncate(time.Second)
	deliver(t, env, "new after the switch", switched.Add(30*time.Minute))

	// No dns.switched yet: verified as source = target, saying so.
	r, err := verifyCLI(t, ctx, "-c", env.ConfigPath, "-since-switch")
	if !errors.Is(err, errDifferent) || r.Mailboxes[0].NewAfter != nil || !strings.Contains(r.Mailboxes[0].Note, "no dns.switched event for example.test") {
		t.Errorf("before any switch: err %v, new after %v, note %q; want the new mail extra and the note", err, r.Mailboxes[0].NewAfter, r.Mailboxes[0].Note)
	}

	publishSwitched(t, ctx, env, "example.test", switched)
	r, err = verifyCLI(t, ctx, "-c", env.ConfigPath, "-since-switch")
	m := r.Mailboxes[0]
	if err != nil || !m.OK || m.NewAtTarget != 1 || m.NewAfter == nil || !m.NewAfter.Equal(switched) {
		t.Errorf("after the switch: err %v, ok %v, %d new at target after %v; want ok, 1 new after %v", err, m.OK, m.NewAtTarget, m.NewAfter, switched)
	}
	for _, f := range m.Folders {
		for _, d := range f.NewAtTarget {
			if d.Kind != "new_at_target" || d.Subject != "new after the switch" || d.Folder != "INBOX" {
				t.Errorf("new at target %+v, want the delivered message named", d)
			}
		}
	}
	// Without -since-switch it is extra.
	if _, err := verifyCLI(t, ctx, "-c", env.ConfigPath); !errors.Is(err, errDifferent) {
		t.Errorf("without -since-switch: err %v, want the new mail a difference", err)
	}

	// An extra message from before the switch still is a difference.
	deliver(t, env, "stray from before the switch", switched.Add(-time.Minute))
	r, err = verifyCLI(t, ctx, "-c", env.ConfigPath, "-since-switch")
	var extra []string
	for _, f := range r.Mailboxes[0].Folders {
		for _, d := range f.Differences {
			extra = append(extra, d.Kind+" "+d.Subject)
		}
	}
	if !errors.Is(err, errDifferent) || len(extra) != 1 || extra[0] != "extra stray from before the switch" || r.Mailboxes[0].NewAtTarget != 1 {
		t.Errorf("err %v, differences %q, %d new; want the stray one extra, the new one new", err, extra, r.Mailboxes[0].NewAtTarget)
	}
}

// deliver appends a message to user1's target INBOX, as mail delivered
// to the new server at at.
func deliver(t *testing.T, env *demo.Env, subject string, at time.Time) {
	t.Helper()
	c := targetAsUser1(t, env)
	body := []byte("From: someone@new.example\r\nSubject: " + subject + "\r\nMessage-ID: <" + strings.ReplaceAll(subject, " ", ".") + "@new.example>\r\n\r\nhello\r\n")
	cmd := c.Append("INBOX", int64(len(body)), &imap.AppendOptions{Time: at})
	if _, err := cmd.Write(body); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
}

// publishSwitched records that dnsctl switched domain at at.
func publishSwitched(t *testing.T, ctx context.Context, env *demo.Env, domain string, at time.Time) {
	t.Helper()
	cfg, err := env.Config()
	if err != nil {
		t.Fatal(err)
	}
	b, err := broker.Open(ctx, cfg.NATS, "test", zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if err := b.Use(ctx, broker.Needs{Writes: []string{broker.StreamEvents}}); err != nil {
		t.Fatal(err)
	}
	d := event.DNSSwitchedData{Serial: 7, OldTTL: 300, OldTTLExpiresAt: at.Add(5 * time.Minute), VerifiedAt: at}
	if err := (event.Publisher{JS: b.JS, Service: "dnsctl"}).Publish(ctx, event.Switched(domain, d)); err != nil {
		t.Fatal(err)
	}
}

func TestLastSwitchIsTheLatestOfTheMailboxsDomainInAnyCase(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dir := t.TempDir()
	cfg, err := config.Parse([]byte("nats: {data_dir: "+filepath.Join(dir, "nats")+"}\n"), dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := broker.Open(ctx, cfg.NATS, "test", zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if err := b.DeclareAll(ctx); err != nil {
		t.Fatal(err)
	}
	t1 := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	t2 := t1.Add(time.Hour)
	pub := event.Publisher{JS: b.JS, Service: "dnsctl"}
	for _, o := range []event.Outgoing{
		event.Switched("acme.test.", event.DNSSwitchedData{Serial: 1, VerifiedAt: t1}),
		event.Switched("acme.test", event.DNSSwitchedData{Serial: 2, VerifiedAt: t2}),
		event.Switched("old.test", event.DNSSwitchedData{Serial: 1}),
	} {
		if err := pub.Publish(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	st, err := b.JS.Stream(ctx, broker.StreamEvents)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, source, target string
		want                 time.Time
		anyTime              bool
	}{
		{"the latest switch", "a@acme.test", "a@acme.test", t2, false},
		{"the domain in another case", "a@ACME.Test", "a@ACME.Test", t2, false},
		{"the target's domain", "a@elsewhere.test", "a@acme.test", t2, false},
		{"no switch", "a@other.test", "a@other.test", time.Time{}, false},
		{"no verified time: the event's", "a@old.test", "a@old.test", time.Time{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, domain, err := lastSwitch(ctx, st, job.Mailbox{SourceUser: tt.source, TargetUser: tt.target})
			if err != nil {
				t.Fatal(err)
			}
			if tt.anyTime && (got.IsZero() || time.Since(got) > time.Minute) || !tt.anyTime && !got.Equal(tt.want) {
				t.Errorf("lastSwitch(%s, %s) = %v (%s), want %v", tt.source, tt.target, got, domain, tt.want)
			}
		})
	}
	if got, _, err := lastSwitch(ctx, nil, job.Mailbox{SourceUser: "a@acme.test"}); err != nil || !got.IsZero() {
		t.Errorf("without an events stream: %v, %v; want no switch", got, err)
	}
}

// acceptCLI runs verify accept with args and returns its exit status and
// output.
func acceptCLI(ctx context.Context, args ...string) (code int, stdout, stderr string) {
	var out, errOut bytes.Buffer
	err := run(ctx, "verify", append([]string{"accept"}, args...), &out, &errOut)
	return command.ExitCode(err), out.String(), errOut.String()
}

// listeningBroker starts a broker that listens, on natsDir, for the
// commands of a test to share (an embedded one is one process's alone),
// and returns its URL.
func listeningBroker(t *testing.T, ctx context.Context, natsDir string) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	cfg, err := config.Parse([]byte("nats: {data_dir: "+natsDir+", listen: "+addr+"}\n"), t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := broker.Open(ctx, cfg.NATS, "test-server", zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	return b.ClientURL()
}

// kinds names each difference (or, with accepted, each accepted one) of
// a mailbox's report by kind, folder and subject, in order.
func kinds(m verify.MailboxReport, accepted bool) []string {
	var out []string
	for _, f := range m.Folders {
		ds := f.Differences
		if accepted {
			ds = nil
			for _, a := range f.Accepted {
				ds = append(ds, a.Diff)
			}
		}
		for _, d := range ds {
			out = append(out, d.Kind+" "+d.Folder+" "+d.Subject)
		}
	}
	slices.Sort(out)
	return out
}

// appendTarget appends body to folder of user at the target as mail
// delivered there, and returns the UID the target gave it.
func appendTarget(t *testing.T, p *e2etest.Peers, user, folder string, body []byte) uint32 {
	t.Helper()
	c, err := imapclient.DialInsecure(p.Tgt.Addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Login(user+"*admin", e2etest.MasterPassword).Wait(); err != nil {
		t.Fatal(err)
	}
	cmd := c.Append(folder, int64(len(body)), &imap.AppendOptions{Time: time.Date(2020, 5, 6, 7, 8, 9, 0, time.UTC)})
	if _, err := cmd.Write(body); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Close(); err != nil {
		t.Fatal(err)
	}
	data, err := cmd.Wait()
	if err != nil || data.UID == 0 {
		t.Fatalf("append to %s: %v (uid %d)", folder, err, data.UID)
	}
	return uint32(data.UID)
}

// expungeTarget deletes the messages whose subject contains subject from
// folder of user at the target.
func expungeTarget(t *testing.T, ctx context.Context, p *e2etest.Peers, user, folder, subject string) {
	t.Helper()
	if out, err := p.Tgt.Doveadm(ctx, "expunge", "-u", user, "mailbox", folder, "subject", subject); err != nil {
		t.Fatalf("doveadm expunge %s %q: %v\n%s", folder, subject, err, out)
	}
}

func TestVerifyAcceptRecordsKnownDifferencesSoTheMailboxVerifiesAndNewOnesStillCount(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	p := e2etest.Start(t, 2, dovecottest.Options{})
	owner, crowd := p.Users[0], p.Users[1]
	rng := rand.New(rand.NewPCG(11, 12))
	for _, s := range []struct {
		user, folder, tag string
		n                 int
	}{{owner, "INBOX", "in", 6}, {owner, "Work", "work", 4}, {crowd, "INBOX", "crowd", 10}} {
		if err := p.Src.Seed(s.user, s.folder, e2etest.Generated(rng, s.n, s.tag)); err != nil {
			t.Fatal(err)
		}
	}
	natsDir := filepath.Join(p.Dir, "nats")
	url := listeningBroker(t, ctx, natsDir)
	conf, _ := p.Config(t, natsDir)
	raw, err := os.ReadFile(conf)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(conf, bytes.Replace(raw, []byte("nats:\n"), []byte("nats:\n  url: "+url+"\n"), 1), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := cli(t, ctx, "migrate", "-c", conf); err != nil {
		t.Fatalf("migrate: %v\n%s", err, out)
	}
	const reason = "deleted by the customer before the cutover"

	// A message lost at the target is a difference.
	expungeTarget(t, ctx, p, owner, "INBOX", "in 1")
	r, err := verifyCLI(t, ctx, "-c", conf, "-mailbox", owner)
	if !errors.Is(err, errDifferent) || !slices.Equal(kinds(r.Mailboxes[0], false), []string{"missing INBOX in 1"}) {
		t.Fatalf("after losing a message: err %v, differences %q; want it missing", err, kinds(r.Mailboxes[0], false))
	}

	// Command lines that cannot be run are refused before anything runs.
	for _, tt := range []struct {
		args []string
		says string
	}{
		{[]string{"-c", conf, "-mailbox", owner, "-all"}, "-reason TEXT is required"},
		{[]string{"-c", conf, "-mailbox", owner, "-reason", "  ", "-all"}, "-reason TEXT is required"},
		{[]string{"-c", conf, "-reason", reason, "-all"}, "-mailbox M is required"},
		{[]string{"-c", conf, "-mailbox", owner, "-reason", reason}, "choose the differences"},
		{[]string{"-c", conf, "-mailbox", owner, "-reason", reason, "-all", "-uid", "3"}, "pass -all or -uid, not both"},
		{[]string{"-c", conf, "-mailbox", owner, "-reason", reason, "-uid", "x"}, `"x" is not a UID`},
		{[]string{"-c", conf, "-mailbox", "nobody@old.example", "-reason", reason, "-all"}, "is not a source mailbox"},
	} {
		code, out, errOut := acceptCLI(ctx, tt.args...)
		if code != 2 || out != "" || !strings.HasPrefix(errOut, "mailferry: verify accept: ") || !strings.Contains(errOut, tt.says) {
			t.Errorf("verify accept %q: exit %d, stdout %q, stderr %q; want 2 saying %q", tt.args, code, out, errOut, tt.says)
		}
	}
	if code, _, errOut := acceptCLI(ctx, "-c", conf, "-mailbox", owner, "-reason", reason, "-uid", "999"); code != 1 || !strings.Contains(errOut, "none of the 1 differences") {
		t.Errorf("-uid of no difference: exit %d, %q; want 1 saying none matches", code, errOut)
	}

	code, out, errOut := acceptCLI(ctx, "-c", conf, "-mailbox", owner, "-reason", reason, "-all")
	if code != 0 || !strings.Contains(out, `accepted missing "INBOX" uid 2`) || !strings.Contains(out, `subject "in 1"`) || !strings.Contains(out, "accepted 1 differences of "+owner) {
		t.Fatalf("verify accept -all: exit %d\n%s%s\nwant the missing message named as accepted", code, out, errOut)
	}
	r, err = verifyCLI(t, ctx, "-c", conf, "-mailbox", owner)
	m := r.Mailboxes[0]
	if err != nil || !m.OK || m.Accepted != 1 || !slices.Equal(kinds(m, true), []string{"missing INBOX in 1"}) {
		t.Fatalf("verify after accepting: err %v, ok %v, accepted %q; want ok with the missing one accepted", err, m.OK, kinds(m, true))
	}
	a := m.Folders[slices.IndexFunc(m.Folders, func(f verify.FolderReport) bool { return f.Target == "INBOX" })].Accepted[0]
	if a.Reason != reason || a.AcceptedBy == "" || time.Since(a.AcceptedAt) > time.Minute || a.MessageID == "" {
		t.Errorf("accepted %+v: want the reason, who and when, and the message named", a)
	}
	if code, out, _ := mailferry(t, "verify", "-c", conf, "-mailbox", owner); code != 0 || !strings.Contains(out, "ACCEPTED missing INBOX uid 2") || !strings.Contains(out, reason) {
		t.Errorf("text report: exit %d\n%s\nwant the accepted difference with its reason", code, out)
	}
	if code, out, _ := acceptCLI(ctx, "-c", conf, "-mailbox", owner, "-reason", reason, "-all"); code != 0 || !strings.Contains(out, "nothing to accept: "+owner+" verifies clean (1 differences accepted before)") {
		t.Errorf("accepting a clean mailbox: exit %d, %q; want nothing to accept", code, out)
	}

	// A message that reached the target by another way, accepted by its
	// target UID, stays accepted when it is appended again under another.
	stray := []byte("From: someone@else.example\r\nSubject: stray\r\nMessage-ID: <stray@else.example>\r\n\r\ndelivered twice\r\n")
	uid := appendTarget(t, p, owner, "Work", stray)
	r, err = verifyCLI(t, ctx, "-c", conf, "-mailbox", owner)
	if !errors.Is(err, errDifferent) || !slices.Equal(kinds(r.Mailboxes[0], false), []string{"extra Work stray"}) {
		t.Fatalf("after the stray message: err %v, differences %q; want it alone extra", err, kinds(r.Mailboxes[0], false))
	}
	if code, out, errOut := acceptCLI(ctx, "-c", conf, "-mailbox", owner, "-reason", "the customer's own copy", "-folder", "Work", "-uid", fmt.Sprint(uid)); code != 0 || !strings.Contains(out, `accepted extra "Work" uid `+fmt.Sprint(uid)) {
		t.Fatalf("verify accept -folder Work -uid %d: exit %d\n%s%s", uid, code, out, errOut)
	}
	expungeTarget(t, ctx, p, owner, "Work", "stray")
	again := appendTarget(t, p, owner, "Work", stray)
	r, err = verifyCLI(t, ctx, "-c", conf, "-mailbox", owner)
	m = r.Mailboxes[0]
	if err != nil || !m.OK || !slices.Equal(kinds(m, true), []string{"extra Work stray", "missing INBOX in 1"}) {
		t.Fatalf("after appending the stray one again (uid %d, was %d): err %v, differences %q, accepted %q; want both accepted",
			again, uid, err, kinds(m, false), kinds(m, true))
	}

	// migrate reports them accepted too.
	out, err = cli(t, ctx, "migrate", "-c", conf, "-json")
	var res struct{ Report verify.Report }
	if jerr := json.Unmarshal([]byte(out), &res); jerr != nil || err != nil || !res.Report.OK || !slices.Contains(kinds(res.Report.Mailboxes[0], true), "extra Work stray") {
		t.Errorf("migrate after accepting: err %v, %v; want OK with the stray message accepted\n%s", err, jerr, out)
	}

	// A new difference still counts, and alone.
	expungeTarget(t, ctx, p, owner, "Work", "work 2")
	r, err = verifyCLI(t, ctx, "-c", conf, "-mailbox", owner)
	if !errors.Is(err, errDifferent) || !slices.Equal(kinds(r.Mailboxes[0], false), []string{"missing Work work 2"}) {
		t.Errorf("after losing another message: err %v, differences %q; want that one alone", err, kinds(r.Mailboxes[0], false))
	}

	// Fifty operators accept the differences of one mailbox at once, by
	// -all or one UID each: every difference is recorded, once.
	for i := range 5 {
		expungeTarget(t, ctx, p, crowd, "INBOX", fmt.Sprintf("crowd %d", i))
	}
	r, _ = verifyCLI(t, ctx, "-c", conf, "-mailbox", crowd)
	var uids []string
	for _, f := range r.Mailboxes[0].Folders {
		for _, d := range f.Differences {
			uids = append(uids, fmt.Sprint(d.UID))
		}
	}
	if len(uids) != 5 {
		t.Fatalf("%d differences of %s, want the 5 lost", len(uids), crowd)
	}
	var wg sync.WaitGroup
	for w := range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			args := []string{"-c", conf, "-mailbox", crowd, "-reason", fmt.Sprintf("operator %d", w), "-folder", "INBOX", "-uid", uids[w%5]}
			if w%10 == 9 {
				args = []string{"-c", conf, "-mailbox", crowd, "-reason", fmt.Sprintf("operator %d", w), "-all"}
			}
			if code, out, errOut := acceptCLI(ctx, args...); code != 0 {
				t.Errorf("operator %d: exit %d\n%s%s", w, code, out, errOut)
			}
		}()
	}
	wg.Wait()
	cfg, err := config.Load(conf)
	if err != nil {
		t.Fatal(err)
	}
	b, err := broker.Connect(ctx, cfg.NATS, "test", zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	kv, err := verify.AcceptedBucket(ctx, b)
	if err != nil || kv == nil {
		t.Fatalf("campaign bucket: %v", err)
	}
	recs, err := verify.LoadAccepted(ctx, kv, crowd)
	if err != nil {
		t.Fatal(err)
	}
	shas := map[string]bool{}
	for _, a := range recs {
		shas[a.SHA256] = true
	}
	if len(recs) != 5 || len(shas) != 5 {
		t.Errorf("%d records of %d messages, want the 5 lost ones once each: %+v", len(recs), len(shas), recs)
	}
	r, err = verifyCLI(t, ctx, "-c", conf, "-mailbox", crowd)
	if err != nil || !r.OK || r.Mailboxes[0].Accepted != 5 {
		t.Errorf("verify after the crowd: err %v, ok %v, %d accepted; want ok, 5", err, r.OK, r.Mailboxes[0].Accepted)
	}
}

func TestVerifyAcceptWorksWithTheEmbeddedBroker(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	env := startDemo(ctx, t, 2, 17)

	// Nothing was migrated: every message is missing. Those of INBOX are
	// accepted; the mailbox still differs by the others.
	r, _ := verifyCLI(t, ctx, "-c", env.ConfigPath, "-mailbox", "user2@example.test")
	var inbox, others int
	for _, f := range r.Mailboxes[0].Folders {
		if f.Target == "INBOX" {
			inbox += len(f.Differences)
		} else {
			others += len(f.Differences)
		}
	}
	if inbox == 0 || others == 0 {
		t.Fatalf("%d differences in INBOX, %d elsewhere; want some of each", inbox, others)
	}
	code, out, errOut := acceptCLI(ctx, "-c", env.ConfigPath, "-mailbox", "user2@example.test", "-reason", "not wanted", "-folder", "INBOX")
	if code != 0 || !strings.Contains(out, fmt.Sprintf("accepted %d differences of user2@example.test (%d left): not wanted", inbox, others)) {
		t.Fatalf("verify accept -folder INBOX: exit %d\n%s%s", code, out, errOut)
	}
	r, err := verifyCLI(t, ctx, "-c", env.ConfigPath)
	for _, m := range r.Mailboxes {
		want := 0
		if m.Source == "user2@example.test" {
			want = inbox
		}
		if m.OK || m.Accepted != want {
			t.Errorf("%s: ok %v, %d accepted; want still different, %d accepted", m.Source, m.OK, m.Accepted, want)
		}
	}
	if !errors.Is(err, errDifferent) {
		t.Errorf("verify: %v, want differences", err)
	}
}
