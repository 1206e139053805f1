package imapdial

import (
	"bytes"
	"errors"
	"net"
	"strconv"
	"sync"
	"time"
)

// Observer is told how a server's connections fare (shared/metrics
// implements it): how long each command took from being sent to its
// tagged answer, by command name ("SELECT", "UID FETCH", ...), and how
// each dial ended (nil, or the error of a connection that could not be
// set up; a refused login reached the server and counts as nil).
type Observer interface {
	Command(name string, took time.Duration)
	Dialed(err error)
}

// headMax is how much of a line's start the tap keeps: enough for a tag
// and a command name or an answer's status word.
const headMax = 48

// tap is the net.Conn under a Conn's buffers when an Observer is set: it
// follows both directions of the protocol (lines and literals) to time
// each tagged command to its tagged answer. Literals are skipped by their
// announced length, so message bodies are never scanned for lines.
type tap struct {
	net.Conn
	obs Observer

	out, in lineTracker // each used by one direction only

	mu      sync.Mutex
	pending map[string]pendingCmd
}

type pendingCmd struct {
	name  string
	start time.Time
}

func newTap(c net.Conn, obs Observer) *tap {
	return &tap{Conn: c, obs: obs, pending: map[string]pendingCmd{}}
}

func (t *tap) Write(b []byte) (int, error) {
	t.out.feed(b, func(head []byte) {
		tag, name, ok := commandOf(head)
		if !ok {
			return
		}
		t.mu.Lock()
		t.pending[tag] = pendingCmd{name: name, start: time.Now()}
		t.mu.Unlock()
	})
	return t.Conn.Write(b)
}

func (t *tap) Read(b []byte) (int, error) {
	n, err := t.Conn.Read(b)
	if n > 0 {
		t.in.feed(b[:n], func(head []byte) {
			tag, _, ok := bytes.Cut(head, []byte(" "))
			if !ok || tag[0] == '*' || tag[0] == '+' {
				return
			}
			t.mu.Lock()
			p, found := t.pending[string(tag)]
			delete(t.pending, string(tag))
			t.mu.Unlock()
			if found {
				t.obs.Command(p.name, time.Since(p.start))
			}
		})
	}
	return n, err
}

// commandOf reads the tag and command name of a command line's start;
// UID commands are named with their subcommand ("UID FETCH").
func commandOf(head []byte) (tag, name string, ok bool) {
	f := bytes.Fields(head)
	if len(f) < 2 || len(f[0]) > 20 {
		return "", "", false
	}
	name = string(bytes.ToUpper(f[1]))
	if name == "UID" && len(f) > 2 {
		name += " " + string(bytes.ToUpper(f[2]))
	}
	return string(f[0]), name, true
}

// lineTracker follows one direction of the IMAP stream: it hands the
// start of every line that begins outside a literal to a callback once
// the line's first CRLF is seen (or headMax bytes of it), and skips
// literals ({N}, {N+}, ~{N}) by their length.
type lineTracker struct {
	skip    int64 // literal bytes still to pass
	inLine  bool  // inside a line whose head was handed over already
	head    []byte
	tail    []byte // the line's last bytes, to find a literal's announcement
	gotHead bool
}

func (l *lineTracker) feed(b []byte, onHead func(head []byte)) {
	for len(b) > 0 {
		if l.skip > 0 {
			n := min(int64(len(b)), l.skip)
			l.skip -= n
			b = b[n:]
			continue
		}
		i := bytes.IndexByte(b, '\n')
		seg := b
		if i >= 0 {
			seg = b[:i+1]
		}
		if !l.gotHead && !l.inLine && len(l.head) < headMax {
			l.head = append(l.head, seg[:min(len(seg), headMax-len(l.head))]...)
		}
		l.tail = append(l.tail, seg[max(0, len(seg)-24):]...)
		if len(l.tail) > 24 {
			l.tail = l.tail[len(l.tail)-24:]
		}
		b = b[len(seg):]
		if i < 0 {
			continue
		}
		if !l.gotHead && !l.inLine {
			onHead(bytes.TrimRight(l.head, "\r\n"))
			l.gotHead = true
		}
		n, lit := literalAt(l.tail)
		l.tail, l.head = l.tail[:0], l.head[:0]
		if lit {
			// The same logical line goes on after the literal.
			l.skip, l.inLine = n, true
			continue
		}
		l.inLine, l.gotHead = false, false
	}
}

// literalAt reads a literal's length from the end of a line ("{123}\r\n",
// "{123+}\r\n").
func literalAt(tail []byte) (int64, bool) {
	t := bytes.TrimRight(tail, "\r\n")
	if len(t) < 3 || t[len(t)-1] != '}' {
		return 0, false
	}
	open := bytes.LastIndexByte(t, '{')
	if open < 0 {
		return 0, false
	}
	digits := bytes.TrimRight(t[open+1:len(t)-1], "+-")
	n, err := strconv.ParseInt(string(digits), 10, 64)
	if err != nil || n < 0 {
		return 0, false
	}
	return n, true
}

// dialOutcome is what Observer.Dialed is told of a dial's error: a
// refused login reached the server.
func dialOutcome(err error) error {
	if errors.Is(err, ErrLoginRefused) {
		return nil
	}
	return err
}
