package imapappend

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-imap/v2/imapserver/imapmemserver"

	"github.com/mailferry/mailferry/shared/config"
	"github.com/mailferry/mailferry/shared/imapdial"
)

func userCred() imapdial.Credentials {
	return imapdial.Credentials{User: "u", Password: "p"}
}

func TestAppendParsesUIDSetsAmidUntaggedResponses(t *testing.T) {
	msgs := genMessages(4, 300, "fake")
	for _, tc := range []struct {
		name     string
		useMulti bool
		answer   func(i int, tag string) []string // i: command number
		wantUIDs []uint32
	}{
		{
			name: "multiappend with a uid list and range", useMulti: true,
			answer: func(_ int, tag string) []string {
				return []string{"* 4 EXISTS", "* 1 RECENT", "* OK [ALERT] disk nearly full", "* CAPABILITY IMAP4rev1 LITERAL+ MULTIAPPEND UIDPLUS", tag + " OK [APPENDUID 77 5,6,8:9] done"}
			},
			wantUIDs: []uint32{5, 6, 8, 9},
		},
		{
			name: "pipelined one uid each", useMulti: false,
			answer: func(i int, tag string) []string {
				return []string{fmt.Sprintf("* %d EXISTS", i+1), fmt.Sprintf("%s OK [APPENDUID 77 %d] done", tag, 20+i)}
			},
			wantUIDs: []uint32{20, 21, 22, 23},
		},
		{
			name: "pipelined without APPENDUID", useMulti: false,
			answer: func(_ int, tag string) []string { return []string{tag + " OK done"} },
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got [][]byte
			srv := startFake(t, func(fc *fakeConn) error {
				if err := fc.loginFake("IMAP4rev1 LITERAL+ MULTIAPPEND UIDPLUS"); err != nil {
					return err
				}
				for i := 0; len(got) < len(msgs); i++ {
					cmd, err := fc.readCommand(nil)
					if err != nil {
						return err
					}
					got = append(got, cmd.literals...)
					if err := fc.send(tc.answer(i, cmd.tag)...); err != nil {
						return err
					}
				}
				_, err := fc.readCommand(nil) // until the client hangs up
				return err
			})
			c := dialT(t, plainIMAP(srv.Addr), userCred())
			res, err := c.Append(context.Background(), "INBOX", messagesOf(msgs), tc.useMulti)
			if err != nil {
				t.Fatalf("Append: %v", err)
			}
			c.Close()
			srv.wait()
			if tc.wantUIDs != nil && (res.UIDValidity != 77 || !slices.Equal(res.UIDs, tc.wantUIDs)) {
				t.Errorf("Result %+v, want UIDVALIDITY 77 and UIDs %v", res, tc.wantUIDs)
			}
			if tc.wantUIDs == nil && res.UIDs != nil {
				t.Errorf("Result %+v, want no UIDs", res)
			}
			for i := range msgs {
				if !bytes.Equal(got[i], msgs[i].body) {
					t.Errorf("literal %d differs from message %d", i, i)
				}
			}
		})
	}
}

func TestAppendSendsMessagesAboveAppendLimitSynchronizing(t *testing.T) {
	const limit = 1000
	msgs := []testMsg{genMessages(1, 200, "a")[0], genMessages(1, 3*limit, "b")[0]}
	var texts []string
	srv := startFake(t, func(fc *fakeConn) error {
		if err := fc.loginFake(fmt.Sprintf("IMAP4rev1 LITERAL+ UIDPLUS APPENDLIMIT=%d", limit)); err != nil {
			return err
		}
		for {
			cmd, err := fc.readCommand(func(tag string, size int64) string {
				if size > limit {
					return tag + " NO [TOOBIG] too big for me"
				}
				return ""
			})
			if err != nil {
				return err
			}
			texts = append(texts, cmd.text)
			if len(cmd.literals) > 0 {
				if err := fc.send(cmd.tag + " OK [APPENDUID 9 1] done"); err != nil {
					return err
				}
			}
		}
	})
	c := dialT(t, plainIMAP(srv.Addr), userCred())
	if c.AppendLimit() != limit || !c.Has("APPENDLIMIT") {
		t.Fatalf("AppendLimit %d, Has(APPENDLIMIT) %v; caps %v", c.AppendLimit(), c.Has("APPENDLIMIT"), c.Caps())
	}
	_, err := c.Append(context.Background(), "INBOX", messagesOf(msgs), false)
	var se *ServerError
	var ae *AppendError
	if !errors.As(err, &ae) || ae.Index != 1 || !errors.As(err, &se) || se.Code != "TOOBIG" || se.Line != "A3 NO [TOOBIG] too big for me" {
		t.Fatalf("error %v: want message 1 refused with the server's TOOBIG line", err)
	}
	c.Close()
	srv.wait()
	if len(texts) != 2 || !strings.HasSuffix(texts[0], fmt.Sprintf("{%d+}", len(msgs[0].body))) || !strings.HasSuffix(texts[1], fmt.Sprintf("{%d}", len(msgs[1].body))) {
		t.Errorf("commands %q: want a non-synchronizing then a synchronizing literal", texts)
	}
}

// stallingServer logs the client in and then reads without ever answering.
func stallingServer(t *testing.T) *fakeServer {
	return startFake(t, func(fc *fakeConn) error {
		if err := fc.loginFake("IMAP4rev1 LITERAL+ MULTIAPPEND UIDPLUS"); err != nil {
			return err
		}
		_, err := io.Copy(io.Discard, fc.br)
		return err
	})
}

func TestAppendGivesUpWhenTheServerStalls(t *testing.T) {
	for _, tc := range []struct {
		name      string
		useMulti  bool
		timeout   time.Duration
		cancelAt  time.Duration
		wantIs    error
		wantInMsg string
	}{
		{name: "multi: no progress for the command timeout", useMulti: true, timeout: 300 * time.Millisecond, wantInMsg: "no progress for 300ms"},
		{name: "pipelined: no progress for the command timeout", timeout: 300 * time.Millisecond, wantInMsg: "no progress for 300ms"},
		{name: "multi: context cancelled", useMulti: true, timeout: time.Minute, cancelAt: 200 * time.Millisecond, wantIs: context.Canceled},
		{name: "pipelined: context cancelled", timeout: time.Minute, cancelAt: 200 * time.Millisecond, wantIs: context.Canceled},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := stallingServer(t)
			cfg := plainIMAP(srv.Addr)
			cfg.CommandTimeout = config.Duration(tc.timeout)
			c := dialT(t, cfg, userCred())
			ctx := context.Background()
			if tc.cancelAt > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithCancel(ctx)
				defer cancel()
				timer := time.AfterFunc(tc.cancelAt, cancel)
				defer timer.Stop()
			}
			start := time.Now()
			_, err := c.Append(ctx, "INBOX", messagesOf(genMessages(3, 100, "stall")), tc.useMulti)
			if took := time.Since(start); took > 5*time.Second {
				t.Errorf("Append took %v to give up", took)
			}
			if err == nil {
				t.Fatal("Append against a stalled server succeeded")
			}
			if tc.wantIs != nil && !errors.Is(err, tc.wantIs) {
				t.Errorf("error %v, want %v", err, tc.wantIs)
			}
			if !strings.Contains(err.Error(), tc.wantInMsg) {
				t.Errorf("error %v does not say %q", err, tc.wantInMsg)
			}
			var ae *AppendError
			if !errors.As(err, &ae) || !ae.Unknown {
				t.Errorf("error %v: want an *AppendError with an unknown outcome (the command went out whole)", err)
			}
		})
	}
}

// startMemServer runs go-imap's in-memory server: no MULTIAPPEND, no
// LITERAL+ (only LITERAL-), so it exercises synchronizing literals.
func startMemServer(t *testing.T) (string, *imapmemserver.User) {
	t.Helper()
	mem := imapmemserver.New()
	user := imapmemserver.NewUser("u", "p")
	if err := user.Create("INBOX", nil); err != nil {
		t.Fatal(err)
	}
	mem.AddUser(user)
	srv := imapserver.New(&imapserver.Options{
		NewSession: func(*imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
			return mem.NewSession(), nil, nil
		},
		Caps:         imap.CapSet{imap.CapIMAP4rev1: {}, imap.CapUIDPlus: {}},
		InsecureAuth: true,
		Logger:       testLogger{t},
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(ln)
	}()
	t.Cleanup(func() {
		srv.Close()
		<-done
	})
	return ln.Addr().String(), user
}

type testLogger struct{ t *testing.T }

func (l testLogger) Printf(format string, args ...any) { l.t.Logf(format, args...) }

func TestAppendWaitsForContinuationWithoutLiteralPlus(t *testing.T) {
	addr, _ := startMemServer(t)
	cfg := plainIMAP(addr)
	c := dialT(t, cfg, userCred())
	if c.Has("LITERAL+") || c.Has("MULTIAPPEND") || !c.Has("LITERAL-") {
		t.Fatalf("unexpected capabilities %v", c.Caps())
	}
	// Sizes on both sides of LITERAL-'s 4096 bytes.
	msgs := append(genMessages(3, 1000, "small"), genMessages(3, 9000, "large")...)
	res, err := c.Append(context.Background(), "INBOX", messagesOf(msgs), true)
	if err != nil {
		t.Fatalf("Append: %v", err)
	}
	if len(res.UIDs) != len(msgs) {
		t.Fatalf("Result %+v: want %d UIDs", res, len(msgs))
	}
	got := fetchMemServer(t, addr)
	if len(got) != len(msgs) {
		t.Fatalf("server holds %d messages, want %d", len(got), len(msgs))
	}
	for i := range msgs {
		if !bytes.Equal(got[i], msgs[i].body) {
			t.Errorf("message %d differs", i)
		}
	}
}

// fetchMemServer reads all bodies of INBOX with go-imap as user u.
func fetchMemServer(t *testing.T, addr string) [][]byte {
	t.Helper()
	c, err := imapdial.Dial(context.Background(), plainIMAP(addr), userCred(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	section := &imap.FetchItemBodySection{Peek: true}
	msgs, err := c.Fetch(imap.UIDSet{imap.UIDRange{Start: 1, Stop: 0}}, &imap.FetchOptions{UID: true, BodySection: []*imap.FetchItemBodySection{section}}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(msgs, func(a, b *imapclient.FetchMessageBuffer) int { return int(a.UID) - int(b.UID) })
	out := make([][]byte, len(msgs))
	for i, m := range msgs {
		out[i] = m.FindBodySection(section)
	}
	return out
}

func TestAppendFailingOpenStopsThePipelineAndKeepsTheConnection(t *testing.T) {
	addr, _ := startMemServer(t)
	c := dialT(t, plainIMAP(addr), userCred())
	msgs := genMessages(4, 500, "open")
	batch := messagesOf(msgs)
	openErr := errors.New("object store unreachable")
	batch[2].Open = func() (io.ReadCloser, error) { return nil, openErr }
	_, err := c.Append(context.Background(), "INBOX", batch, false)
	var ae *AppendError
	if !errors.Is(err, openErr) || !errors.As(err, &ae) || ae.Index != 2 || !slices.Equal(ae.Appended, []bool{true, true, false, false}) {
		t.Fatalf("error %v: want message 2 failing to open after 0 and 1 were appended", err)
	}
	if _, err := c.Append(context.Background(), "INBOX", batch[3:], false); err != nil {
		t.Fatalf("Append after a failed Open: %v", err)
	}
	got := fetchMemServer(t, addr)
	want := [][]byte{msgs[0].body, msgs[1].body, msgs[3].body}
	if !slices.EqualFunc(got, want, bytes.Equal) {
		t.Errorf("server holds %d messages, want messages 0, 1 and 3", len(got))
	}
}

func TestDialFollowsTheServersAuthenticationOffer(t *testing.T) {
	master := imapdial.Credentials{User: "u@example.org", MasterUser: "admin", MasterPassword: "master-pw"}
	wantIR := base64.StdEncoding.EncodeToString([]byte("u@example.org\x00admin\x00master-pw"))
	for _, tc := range []struct {
		name     string
		cred     imapdial.Credentials
		script   func(fc *fakeConn) error
		wantErr  string // substring; empty for success
		wantCaps []string
	}{
		{
			name: "master with SASL-IR sends the initial response inline",
			cred: master,
			script: func(fc *fakeConn) error {
				if err := fc.send("* OK [CAPABILITY IMAP4rev1 SASL-IR AUTH=PLAIN] hi"); err != nil {
					return err
				}
				cmd, err := fc.readCommand(nil)
				if err != nil {
					return err
				}
				if cmd.text != "A1 AUTHENTICATE PLAIN "+wantIR {
					return fc.send(cmd.tag + " BAD unexpected " + cmd.text)
				}
				return fc.send(cmd.tag + " OK [CAPABILITY IMAP4rev1 MULTIAPPEND] in")
			},
			wantCaps: []string{"IMAP4rev1", "MULTIAPPEND"},
		},
		{
			name: "master without SASL-IR answers the challenge, then asks for capabilities",
			cred: master,
			script: func(fc *fakeConn) error {
				if err := fc.send("* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] hi"); err != nil {
					return err
				}
				cmd, err := fc.readCommand(nil)
				if err != nil {
					return err
				}
				if cmd.text != "A1 AUTHENTICATE PLAIN" {
					return fc.send(cmd.tag + " BAD unexpected " + cmd.text)
				}
				if err := fc.send("+ "); err != nil {
					return err
				}
				resp, err := fc.readCommand(nil)
				if err != nil {
					return err
				}
				if resp.text != wantIR {
					return fc.send("A1 NO [AUTHENTICATIONFAILED] bad response")
				}
				if err := fc.send("A1 OK in"); err != nil {
					return err
				}
				cmd, err = fc.readCommand(nil)
				if err != nil {
					return err
				}
				if cmd.text != "A2 CAPABILITY" {
					return fc.send(cmd.tag + " BAD unexpected " + cmd.text)
				}
				return fc.send("* CAPABILITY IMAP4rev1 UIDPLUS", "A2 OK done")
			},
			wantCaps: []string{"IMAP4rev1", "UIDPLUS"},
		},
		{
			name: "greeting without capabilities makes the client ask",
			cred: imapdial.Credentials{User: "u", Password: "p"},
			script: func(fc *fakeConn) error {
				if err := fc.send("* OK hi"); err != nil {
					return err
				}
				cmd, err := fc.readCommand(nil)
				if err != nil {
					return err
				}
				if cmd.text != "A1 CAPABILITY" {
					return fc.send(cmd.tag + " BAD unexpected " + cmd.text)
				}
				if err := fc.send("* CAPABILITY IMAP4rev1", "A1 OK done"); err != nil {
					return err
				}
				if cmd, err = fc.readCommand(nil); err != nil {
					return err
				}
				if cmd.text != `A2 LOGIN "u" "p"` {
					return fc.send(cmd.tag + " BAD unexpected " + cmd.text)
				}
				return fc.send("A2 OK [CAPABILITY IMAP4rev1 LITERAL+] in")
			},
			wantCaps: []string{"IMAP4rev1", "LITERAL+"},
		},
		{
			name: "LOGINDISABLED refuses a password login",
			cred: imapdial.Credentials{User: "u", Password: "p"},
			script: func(fc *fakeConn) error {
				if err := fc.send("* OK [CAPABILITY IMAP4rev1 LOGINDISABLED] hi"); err != nil {
					return err
				}
				if cmd, err := fc.readCommand(nil); err == nil {
					return fmt.Errorf("client sent %q despite LOGINDISABLED", cmd.text)
				}
				return nil
			},
			wantErr: "LOGINDISABLED",
		},
		{
			name: "master login needs AUTH=PLAIN",
			cred: master,
			script: func(fc *fakeConn) error {
				if err := fc.send("* OK [CAPABILITY IMAP4rev1 AUTH=GSSAPI] hi"); err != nil {
					return err
				}
				_, err := fc.readCommand(nil)
				return err
			},
			wantErr: "AUTH=PLAIN",
		},
		{
			name: "BYE greeting is refused",
			cred: master,
			script: func(fc *fakeConn) error {
				return fc.send("* BYE too many connections")
			},
			wantErr: "too many connections",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := startFake(t, tc.script)
			c, err := dial(context.Background(), plainIMAP(srv.Addr), tc.cred)
			if err != nil {
				if tc.wantErr == "" || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Dial: %v, want error containing %q", err, tc.wantErr)
				}
				if strings.Contains(err.Error(), "master-pw") {
					t.Errorf("error reveals the password: %v", err)
				}
				return
			}
			defer c.Close()
			if tc.wantErr != "" {
				t.Fatalf("Dial succeeded, want error containing %q", tc.wantErr)
			}
			if !slices.Equal(c.Caps(), tc.wantCaps) {
				t.Errorf("Caps() = %v, want %v", c.Caps(), tc.wantCaps)
			}
		})
	}
}

func TestAppendReportsWhatWasStoredWhenTheServerHangsUp(t *testing.T) {
	srv := startFake(t, func(fc *fakeConn) error {
		if err := fc.loginFake("IMAP4rev1 LITERAL+ UIDPLUS"); err != nil {
			return err
		}
		cmd, err := fc.readCommand(nil)
		if err != nil {
			return err
		}
		if err := fc.send(cmd.tag+" OK [APPENDUID 5 1] stored", "* BYE shutting down"); err != nil {
			return err
		}
		return fc.conn.Close()
	})
	c := dialT(t, plainIMAP(srv.Addr), userCred())
	res, err := c.Append(context.Background(), "INBOX", messagesOf(genMessages(3, 100, "bye")), false)
	var ae *AppendError
	if !errors.As(err, &ae) || ae.Index != 1 || !slices.Equal(ae.Appended, []bool{true, false, false}) || !ae.Unknown ||
		!slices.Equal(ae.Fates, []Fate{Stored, Unanswered, Unanswered}) {
		t.Fatalf("error %v: want message 0 appended, 1 and 2 unknown", err)
	}
	if !strings.Contains(err.Error(), "shutting down") {
		t.Errorf("error %v does not give the server's BYE", err)
	}
	if res.UIDValidity != 5 || !slices.Equal(res.UIDs, []uint32{1, 0, 0}) {
		t.Errorf("Result %+v, want UID 1 for message 0 only", res)
	}
	if _, err := c.Append(context.Background(), "INBOX", messagesOf(genMessages(1, 100, "again")), false); err == nil {
		t.Error("Append on a closed connection succeeded")
	}
}

// TestAppendErrorSaysWhatBecameOfEachMessage checks the per-message
// outcome the loader takes at its word: stored under a named UID, stored
// without one, refused with the server's own answer.
func TestAppendErrorSaysWhatBecameOfEachMessage(t *testing.T) {
	for _, tc := range []struct {
		name      string
		answers   []string // per command; %s is the tag
		wantFates []Fate
		wantUIDs  []uint32
		refused   int // message with a refusal, -1 for none
	}{
		{
			name:      "refusal between acknowledged messages",
			answers:   []string{"%s OK [APPENDUID 5 10] ok", "%s NO Message contains NUL characters", "%s OK [APPENDUID 5 12] ok"},
			wantFates: []Fate{Stored, NotStored, Stored}, wantUIDs: []uint32{10, 0, 12}, refused: 1,
		},
		{
			name:      "one answer without APPENDUID keeps the others' UIDs",
			answers:   []string{"%s OK [APPENDUID 5 10] ok", "%s NO [OVERQUOTA] full", "%s OK stored"},
			wantFates: []Fate{Stored, NotStored, Stored}, wantUIDs: []uint32{10, 0, 0}, refused: 1,
		},
		{
			name:      "UIDs under two UIDVALIDITYs are not trusted",
			answers:   []string{"%s OK [APPENDUID 5 10] ok", "%s NO nope", "%s OK [APPENDUID 6 1] ok"},
			wantFates: []Fate{Stored, NotStored, Stored}, refused: 1,
		},
		{
			name:      "APPENDUID naming two UIDs for one message is ignored",
			answers:   []string{"%s OK [APPENDUID 5 10:11] ok", "%s OK [APPENDUID 5 12] ok", "%s BAD [x] bad"},
			wantFates: []Fate{Stored, Stored, NotStored}, wantUIDs: []uint32{0, 12, 0}, refused: 2,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := startFake(t, func(fc *fakeConn) error {
				if err := fc.loginFake("IMAP4rev1 LITERAL+ UIDPLUS"); err != nil {
					return err
				}
				// Read all commands first: the client has sent them
				// before it can see any answer.
				var tags []string
				for range tc.answers {
					cmd, err := fc.readCommand(nil)
					if err != nil {
						return err
					}
					tags = append(tags, cmd.tag)
				}
				for i, a := range tc.answers {
					if err := fc.send(fmt.Sprintf(a, tags[i])); err != nil {
						return err
					}
				}
				_, err := fc.readCommand(nil)
				return err
			})
			c := dialT(t, plainIMAP(srv.Addr), userCred())
			res, err := c.Append(context.Background(), "INBOX", messagesOf(genMessages(len(tc.answers), 100, "fates")), false)
			var ae *AppendError
			if !errors.As(err, &ae) {
				t.Fatalf("error %v, want an *AppendError", err)
			}
			if !slices.Equal(ae.Fates, tc.wantFates) || ae.Unknown {
				t.Errorf("fates %v (unknown %v), want %v", ae.Fates, ae.Unknown, tc.wantFates)
			}
			if !slices.Equal(res.UIDs, tc.wantUIDs) {
				t.Errorf("UIDs %v, want %v", res.UIDs, tc.wantUIDs)
			}
			for i, se := range ae.Refusals {
				if (se != nil) != (i == tc.refused) {
					t.Errorf("refusal of message %d: %v", i, se)
				}
			}
			if se := ae.Refusals[tc.refused]; se == nil || !strings.HasSuffix(se.Line, strings.TrimPrefix(tc.answers[tc.refused], "%s")) {
				t.Errorf("refusal %+v does not carry the server's line", se)
			}
		})
	}
}

func TestRefusedMultiAppendIsAServerErrorAndStoresNothing(t *testing.T) {
	srv := startFake(t, func(fc *fakeConn) error {
		if err := fc.loginFake("IMAP4rev1 LITERAL+ UIDPLUS MULTIAPPEND"); err != nil {
			return err
		}
		cmd, err := fc.readCommand(nil)
		if err != nil {
			return err
		}
		if err := fc.send(cmd.tag + " NO Message contains NUL characters"); err != nil {
			return err
		}
		_, err = fc.readCommand(nil)
		return err
	})
	c := dialT(t, plainIMAP(srv.Addr), userCred())
	res, err := c.Append(context.Background(), "INBOX", messagesOf(genMessages(3, 100, "multi")), true)
	var se *ServerError
	if !errors.As(err, &se) || errors.As(err, new(*AppendError)) || res.UIDs != nil {
		t.Fatalf("Append = %+v, %v; want a bare *ServerError: nothing stored", res, err)
	}
}
