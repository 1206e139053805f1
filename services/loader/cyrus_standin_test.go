package loader

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/mailferry/mailferry/shared/broker"
	"github.com/mailferry/mailferry/shared/subject"
)

// standIn sits between the loader and a real Dovecot to give answers
// Dovecot never gives. With cyrus set, APPENDs behave as Cyrus IMAP 3.6
// does by default: a message with a NUL byte is refused ("NO Message
// contains NUL characters"; a MULTIAPPEND holding one is refused as a
// whole), and raw 8-bit bytes in a message's header are replaced by "X"
// before it is stored, so the size stays and the bytes do not. With
// hangUps > 0, that many APPENDs are carried out but their answers lost:
// the stand-in hangs up instead. Everything else goes to Dovecot as it
// is, so what is stored, the UIDs and the answers are Dovecot's own.
//
// A refused command still goes to Dovecot, as a NOOP whose tagged answer
// is replaced by the refusal: answers keep the order of the commands,
// as a real server's do.
type standIn struct {
	t      *testing.T
	ln     net.Listener
	target string
	cyrus  bool
	wg     sync.WaitGroup

	mu      sync.Mutex
	hangUps int // APPEND answers still to lose
	refused int // APPEND commands refused
	munged  int // messages whose header bytes were replaced
}

func startCyrusStandIn(t *testing.T, target string) *standIn {
	t.Helper()
	return startStandIn(t, target, true, 0)
}

func startStandIn(t *testing.T, target string, cyrus bool, hangUps int) *standIn {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &standIn{t: t, ln: ln, target: target, cyrus: cyrus, hangUps: hangUps}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(func() {
		ln.Close()
		p.wg.Wait()
	})
	return p
}

func (p *standIn) Addr() string { return p.ln.Addr().String() }

func (p *standIn) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		s, err := net.Dial("tcp", p.target)
		if err != nil {
			p.t.Errorf("stand-in: dial %s: %v", p.target, err)
			c.Close()
			continue
		}
		cn := &standInConn{p: p, client: c, server: s, rewrite: map[string]string{}, appends: map[string]bool{}}
		p.wg.Add(2)
		go func() { defer p.wg.Done(); cn.commands() }()
		go func() { defer p.wg.Done(); cn.answers() }()
	}
}

// standInConn is one client connection and its Dovecot connection.
type standInConn struct {
	p              *standIn
	client, server net.Conn
	// wmu keeps whole responses (and the stand-in's own "+") apart on
	// the way to the client; rewrite maps a tag to the answer it gets,
	// appends names the APPEND commands' tags.
	wmu     sync.Mutex
	rewrite map[string]string
	appends map[string]bool
}

func (c *standInConn) close() {
	c.client.Close()
	c.server.Close()
}

var literalAtEnd = regexp.MustCompile(`\{([0-9]+)(\+?)\}$`)

// commands reads client commands (a line and its literals) and passes
// them on, APPENDs as Cyrus would take them.
func (c *standInConn) commands() {
	defer c.close()
	br := bufio.NewReader(c.client)
	for {
		var parts []string // text pieces between literals
		var lits [][]byte
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				return
			}
			line = strings.TrimSuffix(strings.TrimSuffix(line, "\n"), "\r")
			m := literalAtEnd.FindStringSubmatch(line)
			if m == nil {
				parts = append(parts, line)
				break
			}
			parts = append(parts, line[:len(line)-len(m[0])])
			n, _ := strconv.Atoi(m[1])
			if m[2] == "" {
				c.toClient([]byte("+ go ahead\r\n"))
			}
			lit := make([]byte, n)
			if _, err := io.ReadFull(br, lit); err != nil {
				return
			}
			lits = append(lits, lit)
		}
		tag, rest, _ := strings.Cut(parts[0], " ")
		isAppend := strings.HasPrefix(strings.ToUpper(rest), "APPEND ") && len(lits) > 0
		if isAppend {
			c.wmu.Lock()
			c.appends[tag] = true
			c.wmu.Unlock()
		}
		if isAppend && c.p.cyrus {
			if hasNUL(lits) {
				c.p.mu.Lock()
				c.p.refused++
				c.p.mu.Unlock()
				c.wmu.Lock()
				c.rewrite[tag] = tag + " NO Message contains NUL characters"
				c.wmu.Unlock()
				parts, lits = []string{tag + " NOOP"}, nil
			} else {
				for _, l := range lits {
					if munge8bit(l) {
						c.p.mu.Lock()
						c.p.munged++
						c.p.mu.Unlock()
					}
				}
			}
		}
		var out bytes.Buffer
		for i, part := range parts {
			out.WriteString(part)
			if i < len(lits) {
				fmt.Fprintf(&out, "{%d+}\r\n", len(lits[i]))
				out.Write(lits[i])
			}
		}
		out.WriteString("\r\n")
		if _, err := c.server.Write(out.Bytes()); err != nil {
			return
		}
	}
}

// hasNUL reports whether any message holds a NUL byte.
func hasNUL(lits [][]byte) bool {
	for _, l := range lits {
		if bytes.IndexByte(l, 0) >= 0 {
			return true
		}
	}
	return false
}

// munge8bit replaces bytes above 0x7f in the header with "X", in place.
func munge8bit(msg []byte) bool {
	end := bytes.Index(msg, []byte("\r\n\r\n"))
	if end < 0 {
		end = len(msg)
	}
	changed := false
	for i := range msg[:end] {
		if msg[i] >= 0x80 {
			msg[i], changed = 'X', true
		}
	}
	return changed
}

// answers passes Dovecot's responses on whole, literals included, with
// the tagged answers of refused commands replaced.
func (c *standInConn) answers() {
	defer c.close()
	br := bufio.NewReader(c.server)
	for {
		var resp bytes.Buffer
		first := ""
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				return
			}
			if first == "" {
				first = line
			}
			resp.WriteString(line)
			m := literalAtEnd.FindStringSubmatch(strings.TrimRight(line, "\r\n"))
			if m == nil {
				break
			}
			n, _ := strconv.Atoi(m[1])
			if _, err := io.CopyN(&resp, br, int64(n)); err != nil {
				return
			}
		}
		tag, _, _ := strings.Cut(first, " ")
		c.wmu.Lock()
		if c.appends[tag] {
			delete(c.appends, tag)
			c.p.mu.Lock()
			lose := c.p.hangUps > 0
			if lose {
				c.p.hangUps--
			}
			c.p.mu.Unlock()
			if lose {
				c.wmu.Unlock()
				return
			}
		}
		if ans, ok := c.rewrite[tag]; ok {
			delete(c.rewrite, tag)
			resp.Reset()
			resp.WriteString(ans + "\r\n")
		}
		c.wmu.Unlock()
		if err := c.toClient(resp.Bytes()); err != nil {
			return
		}
	}
}

func (c *standInConn) toClient(b []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_, err := c.client.Write(b)
	return err
}

// TestCyrusLikeTargetRefusingOneAndAlteringAnotherAppendsNothingTwice is
// the batch of the report: a 14-message MULTIAPPEND refused as a whole for
// one message with a NUL byte; the pipelined fallback then gets NO for
// that one and OK [APPENDUID] for one whose 8-bit header bytes the server
// replaced. The altered message must be recorded where the server said,
// with both hashes, and appended once.
func TestCyrusLikeTargetRefusingOneAndAlteringAnotherAppendsNothingTwice(t *testing.T) {
	srv := startRigDovecot(t, 0)
	standIn := startCyrusStandIn(t, srv.Addr)
	r := newRig(t, standIn.Addr(), srv.Addr, 20)
	var msgs []rigMsg
	for i := range 14 {
		msgs = append(msgs, rigMsg{uid: uint32(100 + i), body: rfcMsg(fmt.Sprintf("message %d", i), fmt.Sprintf("text %d", i))})
	}
	msgs[4].body = rfcMsg("nul", "a NUL \x00 in the body")
	msgs[9].body = []byte("From: =?x?= Jörg <j@old.example>\r\nSubject: Grüße, raw\r\n\r\nbody\r\n")
	munged := bytes.Clone(msgs[9].body)
	munge8bit(munged)
	cyrus := func(b []byte) []byte {
		if bytes.Equal(b, msgs[9].body) {
			return munged
		}
		return b
	}

	res, err := r.svc.Load(r.ctx, r.publish(msgs))
	if err != nil {
		t.Fatal(err)
	}
	if res.Appended != 13 || res.Dead != 1 {
		t.Errorf("appended %d, dead %d; want 13 and 1", res.Appended, res.Dead)
	}
	standIn.mu.Lock()
	if standIn.refused < 2 || standIn.munged < 1 {
		t.Errorf("stand-in refused %d APPENDs and altered %d messages; want the MULTIAPPEND and the single APPEND refused, one altered", standIn.refused, standIn.munged)
	}
	standIn.mu.Unlock()
	uids := r.checkOnce("INBOX", msgs, map[uint32]bool{104: true}, cyrus)

	items := r.ledgerItems()
	it := items[109]
	if it["how"] != howAppended || uint32(numberOf(it["target_uid"])) != uids[109] || it["sha256"] != sum(msgs[9].body) || it["stored_sha256"] != sum(munged) {
		t.Errorf("ledger of the altered message: %v; want appended at target uid %d, sha256 %s, stored_sha256 %s", it, uids[109], sum(msgs[9].body), sum(munged))
	}
	if it := items[104]; it["how"] != howDead {
		t.Errorf("ledger of the NUL message: %v, want dead", it)
	}
	dl := r.deadLetters()
	if len(dl) != 1 || !strings.Contains(dl[0], `"uid":104`) || !strings.Contains(dl[0], "Message contains NUL characters") {
		t.Errorf("dead letters %v, want one for uid 104 with the server's answer", dl)
	}
}

// deadLetters returns the dead-letter records of the mailbox as JSON.
func (r *rig) deadLetters() []string {
	r.t.Helper()
	st, err := r.b.JS.Stream(r.ctx, broker.StreamDead)
	if err != nil {
		r.t.Fatal(err)
	}
	var out []string
	for seq := uint64(1); ; seq++ {
		m, err := st.GetMsg(r.ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			info, ierr := st.Info(r.ctx)
			if ierr != nil || seq >= info.State.LastSeq {
				return out
			}
			continue
		}
		if err != nil {
			r.t.Fatal(err)
		}
		if m.Subject == subject.Dead(srcUser) {
			out = append(out, string(m.Data))
		}
	}
}
