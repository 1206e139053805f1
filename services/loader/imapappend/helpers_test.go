package imapappend

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"

	"github.com/mailferry/mailferry/shared/config"
	"github.com/mailferry/mailferry/shared/imapdial"
	"github.com/mailferry/mailferry/shared/testenv/dovecottest"
)

const (
	testUser           = "alice@example.org"
	testUserPassword   = "alice-secret-pw"
	testMaster         = "admin"
	testMasterPassword = "master-secret-pw"
)

// startDovecot starts a Dovecot with a master user and testUser.
func startDovecot(t testing.TB, opts dovecottest.Options) *dovecottest.Server {
	t.Helper()
	opts.Separator = '.'
	opts.MasterUser = testMaster
	opts.MasterPassword = testMasterPassword
	if opts.Users == nil {
		opts.Users = map[string]string{}
	}
	opts.Users[testUser] = testUserPassword
	return dovecottest.StartT(t, opts)
}

func plainIMAP(addr string) config.IMAP {
	return config.IMAP{
		Address:        addr,
		TLS:            config.TLSNone,
		DialTimeout:    config.Duration(10 * time.Second),
		CommandTimeout: config.Duration(60 * time.Second),
	}
}

func masterCred() imapdial.Credentials {
	return imapdial.Credentials{User: testUser, MasterUser: testMaster, MasterPassword: testMasterPassword}
}

// dial logs in to s as the loader does: imapdial sets up the connection,
// the Client takes it over.
func dial(ctx context.Context, s config.IMAP, cred imapdial.Credentials) (*Client, error) {
	o, err := imapdial.OptionsFor(s)
	if err != nil {
		return nil, err
	}
	conn, err := imapdial.DialConn(ctx, o, cred)
	if err != nil {
		return nil, err
	}
	return New(conn), nil
}

// dialT logs in and closes the client after the test.
func dialT(t testing.TB, s config.IMAP, cred imapdial.Credentials) *Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := dial(ctx, s, cred)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// testMsg is a message with its bytes, for appending and comparing.
type testMsg struct {
	body  []byte
	flags []string
	date  time.Time
}

func (m testMsg) message() Message {
	return Message{
		Flags: m.flags,
		Date:  m.date,
		Size:  int64(len(m.body)),
		Open:  func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(m.body)), nil },
	}
}

func messagesOf(ms []testMsg) []Message {
	out := make([]Message, len(ms))
	for i, m := range ms {
		out[i] = m.message()
	}
	return out
}

// flagSets cycle through system flags, keywords and \Recent (which must be
// dropped).
var flagSets = [][]string{
	nil,
	{`\Seen`},
	{`\Seen`, `\Flagged`},
	{`$Label1`},
	{`\Answered`, `$Label1`, `$Forwarded`},
	{`\Draft`},
	{`\Recent`, `\Seen`},
	{`\Deleted`, `Junk`},
}

// genMessages makes n RFC 5322 messages of about size bytes each with CRLF
// line ends (Dovecot's maildir stores LF and gives CRLF back, so only CRLF
// messages round-trip byte for byte), varied flags and dates whose day is
// often a single digit (the space-padded date-day-fixed).
func genMessages(n, size int, label string) []testMsg {
	rng := rand.New(rand.NewPCG(uint64(n), uint64(size)))
	out := make([]testMsg, n)
	for i := range out {
		var b bytes.Buffer
		fmt.Fprintf(&b, "From: Sender <sender@example.org>\r\nTo: %s\r\nSubject: %s %d =?utf-8?q?gr=C3=BC=C3=9Fe?=\r\nMessage-ID: <%s.%d@example.org>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n", testUser, label, i, label, i)
		for b.Len() < size {
			line := make([]byte, 20+rng.IntN(60))
			for j := range line {
				line[j] = byte('!' + rng.IntN(94))
			}
			b.Write(line)
			b.WriteString(" grüße\r\n")
		}
		zone := time.FixedZone("", (rng.IntN(25)-12)*3600+rng.IntN(2)*1800)
		out[i] = testMsg{
			body:  b.Bytes(),
			flags: flagSets[i%len(flagSets)],
			date:  time.Date(2000+rng.IntN(25), time.Month(1+rng.IntN(12)), 1+rng.IntN(28), rng.IntN(24), rng.IntN(60), rng.IntN(60), 0, zone),
		}
	}
	return out
}

// stored is one message as the server has it.
type stored struct {
	uid   uint32
	flags []string
	date  time.Time
	sum   [sha256.Size]byte
}

// fetchMailbox reads every message of mailbox with go-imap, an independent
// client, in UID order.
func fetchMailbox(t testing.TB, s config.IMAP, mailbox string) []stored {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c, err := imapdial.Dial(ctx, s, masterCred(), nil)
	if err != nil {
		t.Fatalf("go-imap dial: %v", err)
	}
	defer c.Close()
	sel, err := c.Select(mailbox, nil).Wait()
	if err != nil {
		t.Fatalf("select %q: %v", mailbox, err)
	}
	if sel.NumMessages == 0 {
		return nil
	}
	section := &imap.FetchItemBodySection{Peek: true}
	msgs, err := c.Fetch(imap.UIDSet{imap.UIDRange{Start: 1, Stop: 0}}, &imap.FetchOptions{
		UID: true, Flags: true, InternalDate: true, BodySection: []*imap.FetchItemBodySection{section},
	}).Collect()
	if err != nil {
		t.Fatalf("fetch %q: %v", mailbox, err)
	}
	out := make([]stored, 0, len(msgs))
	for _, m := range msgs {
		st := stored{uid: uint32(m.UID), date: m.InternalDate, sum: sha256.Sum256(m.FindBodySection(section))}
		for _, f := range m.Flags {
			if !strings.EqualFold(string(f), `\Recent`) {
				st.flags = append(st.flags, string(f))
			}
		}
		out = append(out, st)
	}
	slices.SortFunc(out, func(a, b stored) int { return int(a.uid) - int(b.uid) })
	return out
}

// wantFlags is what the server should keep of flags: all but \Recent, in
// a canonical order.
func wantFlags(flags []string) []string {
	var out []string
	for _, f := range flags {
		if !strings.EqualFold(f, `\Recent`) {
			out = append(out, f)
		}
	}
	return canonFlags(out)
}

func canonFlags(flags []string) []string {
	out := slices.Clone(flags)
	slices.SortFunc(out, func(a, b string) int { return strings.Compare(strings.ToLower(a), strings.ToLower(b)) })
	return out
}

// checkStored compares the mailbox with want (the messages that should be
// there, in append order) and, when uids is not nil, their UIDs.
func checkStored(t testing.TB, got []stored, want []testMsg, uids []uint32) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("mailbox holds %d messages, want %d", len(got), len(want))
	}
	for i := range want {
		g, w := got[i], want[i]
		if g.sum != sha256.Sum256(w.body) {
			t.Errorf("message %d (uid %d): body differs from what was appended", i, g.uid)
		}
		if gf, wf := canonFlags(g.flags), wantFlags(w.flags); !slices.EqualFunc(gf, wf, strings.EqualFold) {
			t.Errorf("message %d: flags %v, want %v", i, gf, wf)
		}
		if !g.date.Equal(w.date) {
			t.Errorf("message %d: INTERNALDATE %v, want %v", i, g.date, w.date)
		}
		if uids != nil && uids[i] != g.uid {
			t.Errorf("message %d: Result UID %d, server UID %d", i, uids[i], g.uid)
		}
	}
}

// pick returns the messages whose flag in keep is set.
func pick[T any](all []T, keep []bool) []T {
	var out []T
	for i, k := range keep {
		if k {
			out = append(out, all[i])
		}
	}
	return out
}

// fakeServer is a scripted IMAP peer on loopback for behaviour Dovecot
// cannot be made to show (stalls, odd response codes). It serves one
// connection with script; the goroutine is joined at cleanup.
type fakeServer struct {
	Addr string
	done chan struct{} // closed when the script has returned
}

// wait waits for the script to return (the client must have hung up), so
// the test may read what the script recorded.
func (f *fakeServer) wait() { <-f.done }

// fakeConn is the server side of one scripted connection.
type fakeConn struct {
	t    testing.TB
	conn net.Conn
	br   *bufio.Reader
}

func startFake(t testing.TB, script func(fc *fakeConn) error) *fakeServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conn net.Conn
	done := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(done)
		c, err := ln.Accept()
		if err != nil {
			return
		}
		mu.Lock()
		conn = c
		mu.Unlock()
		defer c.Close()
		fc := &fakeConn{t: t, conn: c, br: bufio.NewReader(c)}
		if err := script(fc); err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
			t.Errorf("fake server: %v", err)
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		if conn != nil {
			conn.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return &fakeServer{Addr: ln.Addr().String(), done: done}
}

func (f *fakeConn) send(lines ...string) error {
	for _, l := range lines {
		if _, err := io.WriteString(f.conn, l+"\r\n"); err != nil {
			return err
		}
	}
	return nil
}

// command is one client command as the fake server read it.
type command struct {
	tag, text string   // text with literals replaced by {n} or {n+}
	literals  [][]byte // the literals' bytes
}

// readCommand reads a command, answering "+" to synchronizing literals
// unless refuse says otherwise: refuse gets the literal's size and may
// return a tagged answer instead of the "+".
func (f *fakeConn) readCommand(refuse func(tag string, size int64) string) (*command, error) {
	cmd := &command{}
	var text strings.Builder
	for {
		line, err := f.br.ReadString('\n')
		if err != nil {
			return nil, err
		}
		line = strings.TrimSuffix(line, "\r\n")
		text.WriteString(line)
		if cmd.tag == "" {
			cmd.tag, _, _ = strings.Cut(line, " ")
		}
		i := strings.LastIndexByte(line, '{')
		if !strings.HasSuffix(line, "}") || i < 0 {
			cmd.text = text.String()
			return cmd, nil
		}
		spec := line[i+1 : len(line)-1]
		sync := !strings.HasSuffix(spec, "+")
		n, err := strconv.ParseInt(strings.TrimSuffix(spec, "+"), 10, 64)
		if err != nil {
			return nil, fmt.Errorf("bad literal in %q", line)
		}
		if sync {
			if refuse != nil {
				if ans := refuse(cmd.tag, n); ans != "" {
					cmd.text = text.String()
					return cmd, f.send(ans)
				}
			}
			if err := f.send("+ go ahead"); err != nil {
				return nil, err
			}
		}
		lit := make([]byte, n)
		if _, err := io.ReadFull(f.br, lit); err != nil {
			return nil, err
		}
		cmd.literals = append(cmd.literals, lit)
	}
}

// loginFake greets and accepts the LOGIN of a client, announcing caps.
func (f *fakeConn) loginFake(caps string) error {
	if err := f.send("* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] fake ready"); err != nil {
		return err
	}
	cmd, err := f.readCommand(nil)
	if err != nil {
		return err
	}
	if !strings.Contains(cmd.text, " LOGIN ") {
		return fmt.Errorf("want LOGIN, got %q", cmd.text)
	}
	// Capabilities in an untagged response, as some servers do.
	return f.send("* CAPABILITY "+caps, cmd.tag+" OK logged in")
}

// recordingProxy forwards loopback connections to target and keeps what
// clients sent, so a test can check the wire format a real server saw.
type recordingProxy struct {
	Addr string
	mu   sync.Mutex
	sent bytes.Buffer
}

func startRecordingProxy(t testing.TB, target string) *recordingProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	p := &recordingProxy{Addr: ln.Addr().String()}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	track := func(c net.Conn) {
		mu.Lock()
		conns = append(conns, c)
		mu.Unlock()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			client, err := ln.Accept()
			if err != nil {
				return
			}
			server, err := net.Dial("tcp", target)
			if err != nil {
				client.Close()
				continue
			}
			track(client)
			track(server)
			wg.Add(2)
			go func() {
				defer wg.Done()
				defer server.Close()
				_, _ = io.Copy(io.MultiWriter(server, (*lockedWriter)(p)), client)
			}()
			go func() {
				defer wg.Done()
				defer client.Close()
				_, _ = io.Copy(client, server)
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return p
}

type lockedWriter recordingProxy

func (w *lockedWriter) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.sent.Write(b)
}

// clientBytes returns what clients have sent so far.
func (p *recordingProxy) clientBytes() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.sent.String()
}
