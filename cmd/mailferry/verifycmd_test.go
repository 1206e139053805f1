package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/rs/zerolog"

	"github.com/mailferry/mailferry/cmd/mailferry/demo"
	"github.com/mailferry/mailferry/cmd/mailferry/verify"
	"github.com/mailferry/mailferry/shared/broker"
	"github.com/mailferry/mailferry/shared/config"
	"github.com/mailferry/mailferry/shared/event"
	"github.com/mailferry/mailferry/shared/job"
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
	env, err := demo.Start(ctx, t.TempDir(), 2, 11)
	if err != nil {
		t.Fatal(err)
	}
	defer env.Close()

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
