package imapdial

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"

	"github.com/mailferry/mailferry/shared/config"
	"github.com/mailferry/mailferry/shared/testenv/imaptest"
)

// recorder is an Observer that keeps what it is told.
type recorder struct {
	mu       sync.Mutex
	commands []string
	dials    []error
}

func (r *recorder) Command(name string, _ time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.commands = append(r.commands, name)
}

func (r *recorder) Dialed(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.dials = append(r.dials, err)
}

// scripted is a net.Conn whose reads come from a script and whose writes
// are kept.
type scripted struct {
	net.Conn
	in  io.Reader
	out bytes.Buffer
}

func (s *scripted) Read(b []byte) (int, error)  { return s.in.Read(b) }
func (s *scripted) Write(b []byte) (int, error) { return s.out.Write(b) }

// oneByte reads at most n bytes at a time, to split lines and literals.
type oneByte struct {
	r io.Reader
	n int
}

func (o oneByte) Read(b []byte) (int, error) { return o.r.Read(b[:min(len(b), o.n)]) }

func TestTheTapTimesEachCommandToItsTaggedAnswerAndSkipsLiterals(t *testing.T) {
	body := "From: a\r\nA3 OK not an answer\r\nA2 NO nor this\r\n\r\nhi\r\n"
	commands := []string{
		"A1 LOGIN user pass\r\n",
		"A2 APPEND INBOX (\\Seen) {" + strconv.Itoa(len(body)) + "+}\r\n" + body + " (\\Seen) {3+}\r\nx\r\n\r\n",
		"A3 uid fetch 1:* (BODY.PEEK[])\r\n",
		"A4 SELECT INBOX\r\n",
		"A5 XFOO\r\n",
		"DONE\r\n",
	}
	answers := "* OK hello\r\nA1 OK logged in\r\n+ go on\r\nA2 OK [APPENDUID 1 5:6] done\r\n" +
		"* 1 FETCH (UID 1 BODY[] {" + strconv.Itoa(len(body)) + "}\r\n" + body + ")\r\nA3 OK fetched\r\n" +
		"A4 NO [NONEXISTENT] no such mailbox\r\nA9 OK unknown tag\r\n"
	for _, chunk := range []int{1, 3, 7, 4096} {
		t.Run("reads of "+strconv.Itoa(chunk), func(t *testing.T) {
			rec := &recorder{}
			conn := &scripted{in: oneByte{strings.NewReader(answers), chunk}}
			tp := newTap(conn, rec)
			for _, c := range commands {
				// Writes split at awkward places too.
				for i := 0; i < len(c); i += chunk {
					if _, err := tp.Write([]byte(c[i:min(len(c), i+chunk)])); err != nil {
						t.Fatal(err)
					}
				}
			}
			if _, err := io.Copy(io.Discard, tp); err != nil {
				t.Fatal(err)
			}
			want := []string{"LOGIN", "APPEND", "UID FETCH", "SELECT"}
			if strings.Join(rec.commands, ",") != strings.Join(want, ",") {
				t.Errorf("timed %q, want %q", rec.commands, want)
			}
			if conn.out.String() != strings.Join(commands, "") {
				t.Error("the tap changed what was written")
			}
			if _, left := tp.pending["A5"]; !left || len(tp.pending) != 1 {
				t.Errorf("pending %v, want A5 alone (no answer yet)", tp.pending)
			}
		})
	}
}

func TestALiteralIsReadFromTheEndOfItsLine(t *testing.T) {
	tests := []struct {
		line string
		n    int64
		ok   bool
	}{
		{"A1 APPEND X {12}\r\n", 12, true},
		{"A1 APPEND X {12+}\r\n", 12, true},
		{"A1 APPEND X ~{7}\r\n", 7, true},
		{"A1 LOGIN a b\r\n", 0, false},
		{"* OK {x}\r\n", 0, false},
		{"}\r\n", 0, false},
	}
	for _, tt := range tests {
		n, ok := literalAt([]byte(tt.line))
		if n != tt.n || ok != tt.ok {
			t.Errorf("literalAt(%q) = %d, %v; want %d, %v", tt.line, n, ok, tt.n, tt.ok)
		}
	}
}

func TestAnObservedClientTimesItsCommandsOnARealServer(t *testing.T) {
	addr := imaptest.Serve(t, imaptest.NewUser(t, "u", "p"), imap.CapSet{imap.CapIMAP4rev1: {}, imap.CapUIDPlus: {}}, nil)
	ctx, cancel := context.WithTimeout(context.Background(), bound)
	defer cancel()
	rec := &recorder{}
	s := config.IMAP{Address: addr, TLS: config.TLSNone, DialTimeout: config.Duration(bound)}
	if _, err := DialObserved(ctx, s, Credentials{User: "u", Password: "wrong"}, nil, rec); !errors.Is(err, ErrLoginRefused) {
		t.Fatalf("dial with a wrong password: %v, want ErrLoginRefused", err)
	}
	c, err := DialObserved(ctx, s, Credentials{User: "u", Password: "p"}, nil, rec)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	defer c.Close()
	msg := "Subject: hi\r\n\r\nA9 OK inside a literal\r\n"
	app := c.Append("INBOX", int64(len(msg)), nil)
	if _, err := app.Write([]byte(msg)); err != nil {
		t.Fatal(err)
	}
	if err := app.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := app.Wait(); err != nil {
		t.Fatalf("APPEND: %v", err)
	}
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Fetch(imap.UIDSetNum(1), &imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{{}}}).Collect(); err != nil {
		t.Fatal(err)
	}
	if err := c.Logout().Wait(); err != nil {
		t.Errorf("LOGOUT: %v", err)
	}
	rec.mu.Lock()
	got, dials := strings.Join(rec.commands, ","), append([]error(nil), rec.dials...)
	rec.mu.Unlock()
	for _, want := range []string{"LOGIN", "APPEND", "SELECT", "UID FETCH", "LOGOUT"} {
		if !strings.Contains(","+got+",", ","+want+",") {
			t.Errorf("timed %s, want %s among them", got, want)
		}
	}
	if len(dials) != 2 || dials[0] != nil || dials[1] != nil {
		t.Errorf("dials %v, want two that reached the server (a refused login is no unreachable server)", dials)
	}
	if _, err := DialObserved(ctx, config.IMAP{Address: "127.0.0.1:1", TLS: config.TLSNone, DialTimeout: config.Duration(bound)},
		Credentials{User: "u", Password: "p"}, nil, rec); err == nil {
		t.Fatal("dialled a closed port")
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.dials) != 3 || rec.dials[2] == nil {
		t.Errorf("dials %v, want the third failed", rec.dials)
	}
}
