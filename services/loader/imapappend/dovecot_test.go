package imapappend

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mailferry/mailferry/shared/config"
	"github.com/mailferry/mailferry/shared/imapdial"
	"github.com/mailferry/mailferry/shared/testenv/dovecottest"
)

func TestAppendStoresBytesFlagsDatesAndReportsUIDs(t *testing.T) {
	srv := startDovecot(t, dovecottest.Options{})
	cfg := plainIMAP(srv.Addr)
	for _, tc := range []struct {
		name         string
		useMulti     bool
		wantCommands int // APPEND commands on the wire
	}{
		{"multiappend", true, 1},
		{"pipelined", false, 50},
	} {
		t.Run(tc.name, func(t *testing.T) {
			proxy := startRecordingProxy(t, srv.Addr)
			c := dialT(t, plainIMAP(proxy.Addr), masterCred())
			for _, capa := range []string{"MULTIAPPEND", "LITERAL+", "UIDPLUS"} {
				if !c.Has(capa) {
					t.Fatalf("Dovecot lacks %s after login: %v", capa, c.Caps())
				}
			}
			mailbox := "Batch-" + tc.name
			createMailbox(t, cfg, mailbox)
			msgs := genMessages(50, 3000, tc.name)
			res, err := c.Append(context.Background(), mailbox, messagesOf(msgs), tc.useMulti)
			if err != nil {
				t.Fatalf("Append: %v", err)
			}
			if res.UIDValidity == 0 || len(res.UIDs) != len(msgs) {
				t.Fatalf("Result %+v: want a UIDVALIDITY and %d UIDs", res, len(msgs))
			}
			checkStored(t, fetchMailbox(t, cfg, mailbox), msgs, res.UIDs)
			wire := proxy.clientBytes()
			if n := strings.Count(wire, " APPEND "); n != tc.wantCommands {
				t.Errorf("%d APPEND commands on the wire, want %d", n, tc.wantCommands)
			}
			if n := strings.Count(wire, "+}\r\n"); n != len(msgs) {
				t.Errorf("%d non-synchronizing literals on the wire, want %d (LITERAL+)", n, len(msgs))
			}
			if strings.Contains(strings.ToLower(wire), `\recent`) {
				t.Error(`\Recent was sent`)
			}

			// The connection stays usable for the next batch.
			more := genMessages(3, 500, tc.name+"-more")
			res2, err := c.Append(context.Background(), mailbox, messagesOf(more), tc.useMulti)
			if err != nil {
				t.Fatalf("second Append: %v", err)
			}
			checkStored(t, fetchMailbox(t, cfg, mailbox), append(slices.Clone(msgs), more...), append(slices.Clone(res.UIDs), res2.UIDs...))
			if err := c.Logout(context.Background()); err != nil {
				t.Fatalf("Logout: %v", err)
			}
		})
	}
}

// createMailbox creates mailbox with go-imap.
func createMailbox(t testing.TB, cfg config.IMAP, mailbox string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := imapdial.Dial(ctx, cfg, masterCred(), nil)
	if err != nil {
		t.Fatalf("go-imap dial: %v", err)
	}
	defer c.Close()
	if err := c.Create(mailbox, nil).Wait(); err != nil {
		t.Fatalf("create %q: %v", mailbox, err)
	}
}

// responseLine matches a tagged NO as Dovecot writes it, so the test
// proves ServerError.Line is the server's line, not a rebuilt one.
var responseLine = regexp.MustCompile(`^A[0-9]+ NO \[([A-Z]+)\] (.+)$`)

func TestAppendTooBigMessageReturnsServerErrorWithExactLine(t *testing.T) {
	const limit = 20000
	srv := startDovecot(t, dovecottest.Options{MaxMailSize: limit})
	cfg := plainIMAP(srv.Addr)
	small := genMessages(6, 2000, "small")
	big := genMessages(1, 3*limit, "big")[0]
	batch := []testMsg{small[0], small[1], big, small[2], small[3]}

	checkLine := func(t *testing.T, err error) {
		t.Helper()
		var se *ServerError
		if !errors.As(err, &se) {
			t.Fatalf("error %v (%T) holds no *ServerError", err, err)
		}
		m := responseLine.FindStringSubmatch(se.Line)
		if m == nil {
			t.Fatalf("ServerError.Line %q is not a tagged NO line", se.Line)
		}
		// Dovecot says LIMIT (not RFC 7889's TOOBIG) for quota_max_mail_size.
		if se.Status != "NO" || se.Code != m[1] || se.Code != "LIMIT" || se.Text != m[2] {
			t.Errorf("ServerError %+v does not match its line %q", se, se.Line)
		}
	}

	t.Run("multiappend stores nothing", func(t *testing.T) {
		c := dialT(t, cfg, masterCred())
		createMailbox(t, cfg, "Multi")
		_, err := c.Append(context.Background(), "Multi", messagesOf(batch), true)
		checkLine(t, err)
		if got := fetchMailbox(t, cfg, "Multi"); len(got) != 0 {
			t.Fatalf("MULTIAPPEND refused but %d messages stored", len(got))
		}
		// The connection is still in sync: the next batch goes through.
		res, err := c.Append(context.Background(), "Multi", messagesOf(small[4:]), true)
		if err != nil {
			t.Fatalf("Append after refusal: %v", err)
		}
		checkStored(t, fetchMailbox(t, cfg, "Multi"), small[4:], res.UIDs)
	})

	t.Run("pipelined stores the messages before it", func(t *testing.T) {
		c := dialT(t, cfg, masterCred())
		createMailbox(t, cfg, "Piped")
		res, err := c.Append(context.Background(), "Piped", messagesOf(batch), false)
		checkLine(t, err)
		var ae *AppendError
		if !errors.As(err, &ae) {
			t.Fatalf("error %v is no *AppendError", err)
		}
		if ae.Index != 2 || ae.Unknown || len(ae.Appended) != len(batch) || !ae.Appended[0] || !ae.Appended[1] || ae.Appended[2] {
			t.Fatalf("AppendError %+v: want Index 2, messages 0 and 1 appended, 2 not", ae)
		}
		// Messages after the refused one may have been in flight: whatever
		// Appended says is exactly what the mailbox holds.
		want := pick(batch, ae.Appended)
		var uids []uint32
		for i, ok := range ae.Appended {
			if ok {
				uids = append(uids, res.UIDs[i])
			} else if res.UIDs != nil && res.UIDs[i] != 0 {
				t.Errorf("message %d not appended but has UID %d", i, res.UIDs[i])
			}
		}
		t.Logf("Appended %v", ae.Appended)
		checkStored(t, fetchMailbox(t, cfg, "Piped"), want, uids)
		if _, err := c.Append(context.Background(), "Piped", messagesOf(small[4:]), false); err != nil {
			t.Fatalf("Append after refusal: %v", err)
		}
	})
}

// sizeLying yields body but claims size bytes.
func sizeLying(body []byte, size int64) Message {
	return Message{Size: size, Open: func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader(string(body))), nil }}
}

func TestAppendWrongByteCountAbortsAndStoresNothingCorrupt(t *testing.T) {
	srv := startDovecot(t, dovecottest.Options{})
	cfg := plainIMAP(srv.Addr)
	good := genMessages(3, 5000, "good")
	bad := genMessages(1, 5000, "bad")[0]
	for _, tc := range []struct {
		name     string
		useMulti bool
		size     int64 // claimed size of the bad message
	}{
		{"multi short reader", true, int64(len(bad.body)) + 100},
		{"multi long reader", true, int64(len(bad.body)) - 100},
		{"pipelined short reader", false, int64(len(bad.body)) + 100},
		{"pipelined long reader", false, int64(len(bad.body)) - 1},
		{"pipelined empty claimed", false, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mailbox := strings.ReplaceAll(tc.name, " ", "-")
			createMailbox(t, cfg, mailbox)
			c := dialT(t, cfg, masterCred())
			msgs := []Message{good[0].message(), good[1].message(), sizeLying(bad.body, tc.size), good[2].message()}
			_, err := c.Append(context.Background(), mailbox, msgs, tc.useMulti)
			if !errors.Is(err, ErrSizeMismatch) {
				t.Fatalf("error %v, want ErrSizeMismatch", err)
			}
			var ae *AppendError
			if !errors.As(err, &ae) || ae.Index != 2 || ae.Unknown {
				t.Fatalf("error %v: want an *AppendError for message 2 with a known outcome", err)
			}
			want := []testMsg{good[0], good[1]}
			if tc.useMulti {
				want = nil
			}
			if got := pick(good[:2], ae.Appended[:2]); len(got) != len(want) || slices.Contains(ae.Appended[2:], true) {
				t.Fatalf("Appended %v, want %d leading messages", ae.Appended, len(want))
			}
			checkStored(t, fetchMailbox(t, cfg, mailbox), want, nil)
			if _, err := c.Append(context.Background(), mailbox, msgs[:1], false); err == nil {
				t.Fatal("Append on an aborted connection succeeded")
			}
		})
	}
}

func TestAppendToNonASCIIMailboxUsesModifiedUTF7(t *testing.T) {
	srv := startDovecot(t, dovecottest.Options{})
	cfg := plainIMAP(srv.Addr)
	c := dialT(t, cfg, masterCred())
	const mailbox = "Entwürfe"
	msgs := genMessages(2, 1000, "draft")

	_, err := c.Append(context.Background(), mailbox, messagesOf(msgs), true)
	var se *ServerError
	if !errors.As(err, &se) || se.Code != "TRYCREATE" {
		t.Fatalf("append to a missing mailbox: %v, want [TRYCREATE]", err)
	}
	createMailbox(t, cfg, mailbox) // go-imap encodes the name itself
	res, err := c.Append(context.Background(), mailbox, messagesOf(msgs), true)
	if err != nil {
		t.Fatalf("Append: %v", err)
	}
	checkStored(t, fetchMailbox(t, cfg, mailbox), msgs, res.UIDs)
	out, err := srv.Doveadm(context.Background(), "mailbox", "list", "-u", testUser)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(out), mailbox) {
		t.Errorf("doveadm mailbox list shows no %q:\n%s", mailbox, out)
	}
}

func TestDialLogsInWithEveryMethodAndTLSMode(t *testing.T) {
	const oddPassword = "pä ss\"wörd\\x"
	srv := startDovecot(t, dovecottest.Options{TLS: true, Users: map[string]string{"bob@example.org": oddPassword}})
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, srv.CACertPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	withTLS := func(mode, addr string) config.IMAP {
		s := plainIMAP(addr)
		s.TLS, s.CAFile = mode, caFile
		return s
	}
	for _, tc := range []struct {
		name string
		cfg  config.IMAP
		cred imapdial.Credentials
	}{
		{"master over plain", plainIMAP(srv.Addr), masterCred()},
		{"master over starttls", withTLS(config.TLSStartTLS, srv.Addr), masterCred()},
		{"master over implicit tls", withTLS(config.TLSImplicit, srv.TLSAddr), masterCred()},
		{"user login", plainIMAP(srv.Addr), imapdial.Credentials{User: testUser, Password: testUserPassword}},
		{"user login with 8-bit password as literal", withTLS(config.TLSImplicit, srv.TLSAddr), imapdial.Credentials{User: "bob@example.org", Password: oddPassword}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := dialT(t, tc.cfg, tc.cred)
			if !c.Has("MULTIAPPEND") {
				t.Fatalf("capabilities after login lack MULTIAPPEND: %v", c.Caps())
			}
			msgs := genMessages(2, 800, "login")
			if _, err := c.Append(context.Background(), "INBOX", messagesOf(msgs), true); err != nil {
				t.Fatalf("Append: %v", err)
			}
			if err := c.Logout(context.Background()); err != nil {
				t.Fatalf("Logout: %v", err)
			}
		})
	}
}

func TestDialWrongPasswordFailsWithoutRevealingIt(t *testing.T) {
	srv := startDovecot(t, dovecottest.Options{})
	const wrong = "Wr0ng-Pa55word-XYZ"
	for _, tc := range []struct {
		name string
		cred imapdial.Credentials
	}{
		{"master", imapdial.Credentials{User: testUser, MasterUser: testMaster, MasterPassword: wrong}},
		{"user", imapdial.Credentials{User: testUser, Password: wrong}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := dial(context.Background(), plainIMAP(srv.Addr), tc.cred)
			if err == nil {
				c.Close()
				t.Fatal("Dial with a wrong password succeeded")
			}
			var se *ServerError
			if !errors.As(err, &se) || se.Code != "AUTHENTICATIONFAILED" {
				t.Errorf("error %v: want a ServerError [AUTHENTICATIONFAILED]", err)
			}
			if strings.Contains(err.Error(), wrong) || strings.Contains(se.Line, wrong) {
				t.Errorf("error reveals the password: %v", err)
			}
			if !strings.Contains(err.Error(), testUser) {
				t.Errorf("error %v does not name the user", err)
			}
		})
	}
}
