package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mailferry/mailferry/cmd/mailferry/ops"
	"github.com/mailferry/mailferry/cmd/mailferry/verify"
	"github.com/mailferry/mailferry/shared/testenv/dovecottest"
	"github.com/mailferry/mailferry/shared/testenv/e2etest"
)

// cli runs one mailferry command and returns its standard output.
func cli(t *testing.T, ctx context.Context, args ...string) (string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	err := run(ctx, args[0], args[1:], &out, &errOut)
	if err != nil && !errors.Is(err, errDifferent) {
		t.Logf("mailferry %s: %v\n%s", strings.Join(args, " "), err, errOut.String())
	}
	return out.String(), err
}

func verifyJSON(t *testing.T, ctx context.Context, conf string) verify.Report {
	t.Helper()
	out, _ := cli(t, ctx, "verify", "-c", conf, "-json")
	var r verify.Report
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("verify -json: %v\n%s", err, out)
	}
	return r
}

func TestTargetRefusalsAreDeadLetteredByNameAndRetriedOnceTheTargetAccepts(t *testing.T) {
	const limit, quota = 300_000, 1_000_000
	p := e2etest.Start(t, 2, dovecottest.Options{MaxMailSize: limit, QuotaBytes: quota})
	rng := rand.New(rand.NewPCG(3, 4))
	big, full := p.Users[0], p.Users[1]
	msgs := e2etest.Generated(rng, 6, "small")
	msgs = append(msgs[:3], append([]dovecottest.Message{{Body: e2etest.BigMessage(400_000, "too-big"), Date: e2etest.RandomDate(rng)}}, msgs[3:]...)...)
	if err := p.Src.Seed(big, "Archive", msgs); err != nil {
		t.Fatal(err)
	}
	var over []dovecottest.Message
	for i := range 15 {
		over = append(over, dovecottest.Message{Body: e2etest.BigMessage(100_000, fmt.Sprintf("quota-%d", i)), Date: e2etest.RandomDate(rng)})
	}
	if err := p.Src.Seed(full, "INBOX", over); err != nil {
		t.Fatal(err)
	}
	conf, _ := p.Config(t, filepath.Join(p.Dir, "nats"))
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	if _, err := cli(t, ctx, "migrate", "-c", conf); !errors.Is(err, errDifferent) {
		t.Fatalf("migrate with refused messages: err = %v, want differences", err)
	}
	out, err := cli(t, ctx, "deadletter", "list", "-c", conf, "-json")
	if err != nil {
		t.Fatal(err)
	}
	var dead []ops.Dead
	if err := json.Unmarshal([]byte(out), &dead); err != nil {
		t.Fatalf("deadletter list -json: %v\n%s", err, out)
	}
	byMailbox := map[string][]ops.Dead{}
	for _, d := range dead {
		byMailbox[d.Mailbox] = append(byMailbox[d.Mailbox], d)
		if !strings.Contains(d.Response, "NO ["+d.Code+"]") || d.Size < 100_000 || time.Since(d.Time) > time.Hour || d.UID == 0 {
			t.Errorf("dead letter %+v does not carry the uid, size, the server's exact answer and the time", d)
		}
	}
	if b := byMailbox[big]; len(b) != 1 || b[0].Folder != "Archive" || b[0].UID != 4 || b[0].Code != "LIMIT" {
		t.Errorf("dead letters of %s = %+v, want Archive uid 4 refused with LIMIT", big, b)
	}
	f := byMailbox[full]
	if len(f) < 3 || len(f) > 12 {
		t.Errorf("%s has %d dead letters, want the messages over its 1 MB quota", full, len(f))
	}
	for _, d := range f {
		if d.Code != "OVERQUOTA" {
			t.Errorf("dead letter of %s: code %q, want OVERQUOTA (%s)", full, d.Code, d.Response)
		}
	}
	if out, err := cli(t, ctx, "deadletter", "show", "-c", conf, "-seq", fmt.Sprint(dead[0].Seq)); err != nil || !strings.Contains(out, dead[0].Response) {
		t.Errorf("deadletter show: %v\n%s", err, out)
	}
	// Every difference verify finds is a dead letter, named the same way.
	r := verifyJSON(t, ctx, conf)
	missing := 0
	for _, m := range r.Mailboxes {
		for _, fr := range m.Folders {
			for _, d := range fr.Differences {
				missing++
				found := false
				for _, dl := range byMailbox[m.Source] {
					found = found || (dl.Folder == d.Folder && dl.UID == d.UID)
				}
				if d.Kind != "missing" || !found {
					t.Errorf("%s: difference %+v is not a dead letter", m.Source, d)
				}
			}
		}
	}
	if missing != len(dead) {
		t.Errorf("verify finds %d messages missing, %d were dead-lettered", missing, len(dead))
	}

	// The provider raises its limits; the dead letters are retried.
	raiseLimits(t, ctx, p.Tgt)
	if out, err := cli(t, ctx, "deadletter", "retry", "-c", conf, "-all", "-wait"); err != nil {
		t.Fatalf("deadletter retry: %v\n%s", err, out)
	}
	if r := verifyJSON(t, ctx, conf); !r.OK {
		t.Errorf("after the retry the mailboxes do not verify: %+v", r.Mailboxes)
	}
	if out, _ := cli(t, ctx, "deadletter", "list", "-c", conf); !strings.Contains(out, "0 dead letters") {
		t.Errorf("dead letters left after a successful retry:\n%s", out)
	}
}

func raiseLimits(t *testing.T, ctx context.Context, s *dovecottest.Server) {
	t.Helper()
	f, err := os.OpenFile(s.ConfigPath, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.WriteString("\nplugin {\n  quota_max_mail_size = 0\n  quota_rule = *:storage=1G\n}\n")
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	if out, err := s.Doveadm(ctx, "reload"); err != nil {
		t.Fatalf("doveadm reload: %v\n%s", err, out)
	}
	time.Sleep(time.Second) // the reloaded master takes new logins after a moment
}

func TestReplayRebuildsADeletedTargetMailboxFromTheStreamAlone(t *testing.T) {
	p := e2etest.Start(t, 2, dovecottest.Options{})
	rng := rand.New(rand.NewPCG(5, 6))
	for _, folder := range []string{"INBOX", "Archive/2010", "Entwürfe"} {
		if err := p.Src.Seed(p.Users[0], folder, e2etest.Generated(rng, 15, folder)); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.Src.Seed(p.Users[1], "INBOX", e2etest.Generated(rng, 5, "other")); err != nil {
		t.Fatal(err)
	}
	conf, _ := p.Config(t, filepath.Join(p.Dir, "nats"))
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if out, err := cli(t, ctx, "migrate", "-c", conf); err != nil {
		t.Fatalf("migrate: %v\n%s", err, out)
	}
	deleteMailbox(t, ctx, p.Tgt, p.Users[0])
	if r := verifyJSON(t, ctx, conf); r.OK {
		t.Fatal("verify passes after the target mailbox was deleted")
	}

	// The replay must not need the source: point it at a closed port.
	noSource := filepath.Join(p.Dir, "no-source.yaml")
	raw, err := os.ReadFile(conf)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(noSource, bytes.Replace(raw, []byte(p.Src.Addr), []byte("127.0.0.1:1"), 1), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := cli(t, ctx, "replay", "-c", noSource, "-mailbox", p.Users[0], "-wait")
	if err != nil {
		t.Fatalf("replay: %v\n%s", err, out)
	}
	if !strings.Contains(out, "45 appended") {
		t.Errorf("replay output:\n%s\nwant all 45 messages appended", out)
	}
	if r := verifyJSON(t, ctx, conf); !r.OK {
		t.Errorf("after the replay the target does not verify: %+v", r)
	}
	// A second replay finds everything there and appends nothing.
	out, err = cli(t, ctx, "replay", "-c", noSource, "-mailbox", p.Users[0], "-wait")
	if err != nil || !strings.Contains(out, " 0 appended, 45 already there") {
		t.Errorf("second replay: %v\n%s", err, out)
	}
}

// deleteMailbox deletes every folder of a user on a Dovecot server and
// empties INBOX, as an operator's mistake would.
func deleteMailbox(t *testing.T, ctx context.Context, s *dovecottest.Server, user string) {
	t.Helper()
	out, err := s.Doveadm(ctx, "mailbox", "list", "-u", user)
	if err != nil {
		t.Fatalf("doveadm mailbox list: %v\n%s", err, out)
	}
	if out, err := s.Doveadm(ctx, "expunge", "-u", user, "mailbox", "*", "all"); err != nil {
		t.Fatalf("doveadm expunge: %v\n%s", err, out)
	}
	for _, name := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if name == "" || strings.EqualFold(name, "INBOX") {
			continue
		}
		if out, err := s.Doveadm(ctx, "mailbox", "delete", "-u", user, "-r", "-s", name); err != nil && !strings.Contains(err.Error()+string(out), "doesn't exist") {
			t.Fatalf("doveadm mailbox delete %q: %v\n%s", name, err, out)
		}
	}
}

func TestUIDValidityChangeOnTheSourceReextractsWithoutDuplicates(t *testing.T) {
	p := e2etest.Start(t, 1, dovecottest.Options{})
	rng := rand.New(rand.NewPCG(8, 9))
	user := p.Users[0]
	first := e2etest.Generated(rng, 12, "work")
	if err := p.Src.Seed(user, "Work", first); err != nil {
		t.Fatal(err)
	}
	conf, _ := p.Config(t, filepath.Join(p.Dir, "nats"))
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if out, err := cli(t, ctx, "migrate", "-c", conf); err != nil {
		t.Fatalf("migrate: %v\n%s", err, out)
	}
	// The folder is rebuilt on the source (a new UIDVALIDITY) with the
	// same mail plus two new messages.
	if out, err := p.Src.Doveadm(ctx, "mailbox", "delete", "-u", user, "-s", "Work"); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	again := append(first, e2etest.Generated(rng, 2, "new")...)
	if err := p.Src.Seed(user, "Work", again); err != nil {
		t.Fatal(err)
	}
	out, err := cli(t, ctx, "migrate", "-c", conf, "-json")
	if err != nil {
		t.Fatalf("second migrate: %v\n%s", err, out)
	}
	var res struct {
		Progress []struct{ Appended, Skipped int64 }
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatal(err)
	}
	if res.Progress[0].Appended != 2 || res.Progress[0].Skipped != 12 {
		t.Errorf("after a UIDVALIDITY change: %+v, want the 2 new appended and the 12 known matched", res.Progress[0])
	}
}
