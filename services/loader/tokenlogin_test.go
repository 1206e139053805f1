// The end-to-end test of the loader's login to an OpenSRS target with
// per-mailbox tokens: the OMA stand-in (omafake) issues them, a real
// Dovecot accepts them in place of the password, the loader mints,
// stores, renews and uses them.

package loader_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"

	"github.com/mailferry/mailferry/services/auth/authconfig"
	"github.com/mailferry/mailferry/services/auth/target/opensrs"
	"github.com/mailferry/mailferry/services/auth/testenv/omafake"
	"github.com/mailferry/mailferry/services/loader"
	"github.com/mailferry/mailferry/shared/broker"
	"github.com/mailferry/mailferry/shared/config"
	"github.com/mailferry/mailferry/shared/imapdial"
	"github.com/mailferry/mailferry/shared/job"
	"github.com/mailferry/mailferry/shared/record"
	"github.com/mailferry/mailferry/shared/testenv/dovecottest"
	"github.com/mailferry/mailferry/shared/testenv/imaptest"
	"github.com/mailferry/mailferry/shared/testenv/syncbuf"
)

const (
	srcUser = "carol@old.example"
	tgtUser = "carol@new.example"
	// tokenHour is how long a token "hour" lasts in this test, at the
	// stand-in and for the loader alike.
	tokenHour = 4 * time.Second
)

// rig is the stand-in OMA, the Dovecot target that accepts its tokens,
// and a loader whose target.auth is token.
type rig struct {
	t    *testing.T
	ctx  context.Context
	oma  *omafake.Server
	dc   *dovecottest.Server
	b    *broker.Broker
	svc  *loader.Service
	logs *syncbuf.Buffer
	pass int
	uid  uint32
}

func newRig(t *testing.T) *rig {
	t.Helper()
	dovecottest.Require(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	r := &rig{t: t, ctx: ctx}
	r.dc = dovecottest.StartT(t, dovecottest.Options{PlainPasswords: true, TokenPasswords: true})
	r.oma = omafake.Start(t, "new.example")
	r.oma.Hour = tokenHour
	r.oma.OnTokens = func(valid map[string]string) {
		if err := r.dc.SetTokens(valid); err != nil {
			t.Errorf("token passdb: %v", err)
		}
	}
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	ca := write("oma-ca.pem", r.oma.CAPEM())
	pw := write("oma.pw", []byte(omafake.Password+"\n"))

	// Provisioning: the adapter creates the mailbox at the provider,
	// whose IMAP service then knows it (with a password nobody knows).
	admin, err := opensrs.New(authconfig.Auth{OpenSRS: authconfig.OpenSRS{
		URL: r.oma.URL + "/api", User: omafake.Admin, PasswordFile: pw, CAFile: ca, Client: "test", Timeout: config.Duration(10 * time.Second)}})
	if err != nil {
		t.Fatal(err)
	}
	if errs := admin.CreateMailboxes(ctx, []string{tgtUser}); errs[0] != nil {
		t.Fatalf("provision: %v", errs[0])
	}
	secret, ok := r.oma.UserPassword(tgtUser)
	if !ok {
		t.Fatal("provision: the stand-in holds no mailbox")
	}
	if err := r.dc.AddUser(tgtUser, secret); err != nil {
		t.Fatal(err)
	}

	yaml := fmt.Sprintf(`nats: {data_dir: %s}
source: {auth: user, tls: none}
target:
  address: %q
  tls: none
  auth: token
  opensrs: {url: %q, user: %q, password_file: %s, ca_file: %s, token_hours: 1, renew_before: 1s}
loader: {batch_messages: 2}
`, filepath.Join(dir, "nats"), r.dc.Addr, r.oma.URL+"/api", omafake.Admin, pw, ca)
	cfg, b := imaptest.Broker(t, ctx, yaml, dir)
	r.b = b
	minter, err := opensrs.NewMinter(cfg)
	if err != nil {
		t.Fatal(err)
	}
	minter.TokenHour = tokenHour
	settings, err := loader.LoadSettings(cfg)
	if err != nil {
		t.Fatal(err)
	}
	r.logs = &syncbuf.Buffer{}
	r.svc = &loader.Service{Config: cfg, Settings: settings, Broker: b, Minter: minter, IdleFlush: 20 * time.Millisecond,
		Log: zerolog.New(zerolog.MultiLevelWriter(zerolog.NewTestWriter(t), r.logs)).Level(zerolog.DebugLevel)}
	return r
}

// publish publishes the folder record and n new INBOX messages of a new
// pass (the extractor's part), without the end record.
func (r *rig) publish(n int) *job.Job {
	r.t.Helper()
	r.pass++
	j := &job.Job{Mailbox: job.Mailbox{SourceUser: srcUser, TargetUser: tgtUser}, Pass: fmt.Sprintf("pass%d", r.pass)}
	r.send(record.ListingMsg(&record.Listing{Mailbox: srcUser, TargetUser: tgtUser, Pass: j.Pass,
		Folders: []record.Folder{{Name: "INBOX", Delim: "/", Subscribed: true}}}))
	r.send(record.FolderMsg(&record.Folder{Mailbox: srcUser, TargetUser: tgtUser, Pass: j.Pass, Name: "INBOX", Delim: "/", UIDValidity: 7}))
	r.more(j, n)
	return j
}

// more publishes n more messages of j's pass.
func (r *rig) more(j *job.Job, n int) {
	r.t.Helper()
	for range n {
		prev := r.uid
		r.uid++
		body := fmt.Sprintf("Subject: message %d\r\n\r\nbody %d\r\n", r.uid, r.uid)
		sum := sha256.Sum256([]byte(body))
		r.send(record.MessageMsg(&record.Message{Mailbox: srcUser, TargetUser: tgtUser, Pass: j.Pass, Folder: "INBOX", Delim: "/",
			UIDValidity: 7, UID: r.uid, PrevUID: prev, InternalDate: time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC),
			Size: int64(len(body)), SHA256: hex.EncodeToString(sum[:])}, []byte(body)))
	}
}

func (r *rig) end(j *job.Job) {
	r.t.Helper()
	r.send(record.EndMsg(&record.End{Mailbox: srcUser, TargetUser: tgtUser, Pass: j.Pass}))
}

func (r *rig) send(m *nats.Msg, err error) {
	r.t.Helper()
	if err != nil {
		r.t.Fatal(err)
	}
	if _, err := r.b.JS.PublishMsg(r.ctx, m); err != nil {
		r.t.Fatal(err)
	}
}

// inbox counts the messages in the target's INBOX, read with doveadm.
func (r *rig) inbox() int {
	r.t.Helper()
	out, err := r.dc.Doveadm(r.ctx, "search", "-u", tgtUser, "mailbox", "INBOX", "all")
	if err != nil {
		r.t.Fatalf("doveadm search: %v", err)
	}
	return len(strings.Fields(string(out))) / 2
}

func TestLoaderMigratesWithOpenSRSTokensRenewingThemAndRetryingARefusedOneOnce(t *testing.T) {
	r := newRig(t)

	// Pass 1 takes longer than a token's lifetime: it keeps working on
	// the connections it logged in with.
	j := r.publish(3)
	done := make(chan error, 1)
	go func() {
		_, err := r.svc.Load(r.ctx, j)
		done <- err
	}()
	time.Sleep(tokenHour + time.Second)
	r.more(j, 2)
	r.end(j)
	if err := <-done; err != nil {
		t.Fatalf("pass 1: %v", err)
	}
	if got := r.inbox(); got != 5 {
		t.Fatalf("after pass 1 the target holds %d messages, want 5", got)
	}
	if n := len(r.oma.IssuedTokens(tgtUser)); n != 1 {
		t.Errorf("pass 1 minted %d tokens, want 1", n)
	}

	// Pass 2 starts after the stored token expired: the loader renews it
	// before logging in (no refused login, so exactly one more token).
	j = r.publish(2)
	r.end(j)
	if _, err := r.svc.Load(r.ctx, j); err != nil {
		t.Fatalf("pass 2 (token renewed): %v", err)
	}
	if n := len(r.oma.IssuedTokens(tgtUser)); n != 2 {
		t.Errorf("after pass 2: %d tokens minted, want 2 (one renewal)", n)
	}

	// Pass 3: the stored token stops working early; the refused login is
	// tried once more with a fresh token.
	r.oma.RevokeTokens(tgtUser, false)
	j = r.publish(1)
	r.end(j)
	if _, err := r.svc.Load(r.ctx, j); err != nil {
		t.Fatalf("pass 3 (token refused, replaced): %v", err)
	}
	if n := len(r.oma.IssuedTokens(tgtUser)); n != 3 {
		t.Errorf("after pass 3: %d tokens minted, want 3", n)
	}
	if got := r.inbox(); got != 8 {
		t.Errorf("after pass 3 the target holds %d messages, want 8", got)
	}

	// Pass 4: the target refuses every token: one fresh token is tried,
	// then the login is refused for good.
	r.oma.RevokeTokens(tgtUser, true)
	j = r.publish(1)
	r.end(j)
	_, refusal := r.svc.Load(r.ctx, j)
	if !errors.Is(refusal, imapdial.ErrLoginRefused) {
		t.Fatalf("pass 4: %v, want a refused login", refusal)
	}
	if n := len(r.oma.IssuedTokens(tgtUser)); n != 4 {
		t.Errorf("after pass 4: %d tokens minted, want 4 (a refused token is replaced once, not more)", n)
	}
	kv, err := r.b.JS.KeyValue(r.ctx, broker.BucketTargetTokens)
	if err != nil {
		t.Fatal(err)
	}
	if e, err := kv.Get(r.ctx, loader.TokenKey(tgtUser)); err != nil || !strings.Contains(string(e.Value()), `"token"`) {
		t.Errorf("the token bucket holds no token for %s: %v", tgtUser, err)
	}
	// Tokens are secrets: in the bucket and the LOGIN only.
	for _, tok := range r.oma.IssuedTokens(tgtUser) {
		if strings.Contains(r.logs.String(), tok) || strings.Contains(refusal.Error(), tok) {
			t.Errorf("a token shows in the loader's log or error")
		}
	}
}
