package verify

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/rs/zerolog"

	"github.com/mailferry/mailferry/services/loader"
	"github.com/mailferry/mailferry/shared/broker"
	"github.com/mailferry/mailferry/shared/job"
	"github.com/mailferry/mailferry/shared/testenv/dovecottest"
	"github.com/mailferry/mailferry/shared/testenv/imaptest"
)

// dovecotMinter issues tokens as OpenSRS would and makes the Dovecot
// target accept them in place of the password.
type dovecotMinter struct {
	mu  sync.Mutex
	srv *dovecottest.Server
	n   int
}

func (m *dovecotMinter) MintToken(_ context.Context, user string) (string, time.Duration, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.n++
	tok := fmt.Sprintf("token-%d-for-%s", m.n, strings.ReplaceAll(user, "@", "-"))
	if err := m.srv.SetTokens(map[string]string{user: tok}); err != nil {
		return "", 0, err
	}
	return tok, 24 * time.Hour, nil
}

// TestVerifyLogsInToATokenTargetWithTheLoadersTokens: with target.auth
// token, verify logs in to the target with a token from the loader's
// bucket (minted when none is stored), and says what it needs without it.
func TestVerifyLogsInToATokenTargetWithTheLoadersTokens(t *testing.T) {
	const user = "dora@example.test"
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	srv := dovecottest.StartT(t, dovecottest.Options{Users: map[string]string{user: "a password mailferry never knows"}, PlainPasswords: true, TokenPasswords: true})
	src := imaptest.NewUser(t, user, "pw")
	srcAddr := imaptest.Serve(t, src, imap.CapSet{imap.CapIMAP4rev1: {}}, nil)
	body := "From: d@old.example\r\nSubject: one\r\nMessage-ID: <one@old.example>\r\n\r\nbody\r\n"
	at := time.Date(2016, 1, 2, 3, 4, 5, 0, time.UTC)
	appendTo(t, src, "INBOX", body, at)
	c, err := imapclient.DialInsecure(srv.Addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Login(user, "a password mailferry never knows").Wait(); err != nil {
		t.Fatal(err)
	}
	cmd := c.Append("INBOX", int64(len(body)), &imap.AppendOptions{Time: at})
	if _, err := cmd.Write([]byte(body)); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}

	dir := t.TempDir()
	pw := filepath.Join(dir, "pw")
	if err := os.WriteFile(pw, []byte("pw\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	yaml := fmt.Sprintf("nats: {data_dir: %s}\nsource: {address: %q, tls: none, auth: user}\n"+
		"target: {address: %q, tls: none, auth: token, opensrs: {url: 'https://oma.invalid/api', user: admin@example.test, password_file: %s}}\n",
		filepath.Join(dir, "nats"), srcAddr, srv.Addr, pw)
	cfg, b := imaptest.Broker(t, ctx, yaml, dir)
	if err := b.Use(ctx, broker.Needs{Writes: []string{broker.BucketTargetTokens}}); err != nil {
		t.Fatal(err)
	}
	kv, err := b.JS.KeyValue(ctx, broker.BucketTargetTokens)
	if err != nil {
		t.Fatal(err)
	}
	mb := job.Mailbox{SourceUser: user, TargetUser: user, SourcePasswordFile: pw}

	if r := Mailbox(ctx, cfg, mb); r.OK || !strings.Contains(r.Error, "token") {
		t.Errorf("without the tokens: ok %v, error %q; want an error saying tokens are needed", r.OK, r.Error)
	}
	m := &dovecotMinter{srv: srv}
	tokens := &loader.Tokens{Minter: m, KV: kv, RenewBefore: time.Hour, Log: zerolog.Nop()}
	r := Mailbox(ctx, cfg, mb, WithTargetTokens(tokens))
	if !r.OK || r.Error != "" {
		t.Fatalf("verify with a token: ok %v, error %q, folders %+v", r.OK, r.Error, r.Folders)
	}
	// A second verification reuses the stored token.
	if r := Mailbox(ctx, cfg, mb, WithTargetTokens(tokens)); !r.OK || m.n != 1 {
		t.Errorf("second verification: ok %v (%s) after %d mints, want ok after 1", r.OK, r.Error, m.n)
	}
}
