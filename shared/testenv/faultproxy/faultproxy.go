// Package faultproxy is a TCP proxy for tests that must prove a client
// survives a flaky server: it sits on loopback between the client and a real
// server and, on request, cuts connections mid-stream, stalls them, refuses
// new ones or adds latency; and, speaking a little IMAP, it can make a
// server's refusals look like an older server's (StripNoCodes).
//
// Fault choices come from a seeded generator, drawn once per connection in
// accept order, so a run with the same seed and the same connection order
// hits the same byte offsets.
package faultproxy

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Faults say what the proxy does to connections; the zero value forwards
// faithfully.
type Faults struct {
	// CutAfter, when > 0, closes a connection abruptly (RST on both sides)
	// once a random number of bytes in [CutAfter/2, CutAfter*3/2) has been
	// forwarded server→client, the direction where big literals flow.
	// Bytes still queued in the proxy's socket when it resets may be lost,
	// so the client can see fewer bytes than that.
	CutAfter int64
	// CutProbability in [0,1] is the share of connections that get cut at
	// all; 0 means 1 when CutAfter > 0.
	CutProbability float64
	// StallAfter, when > 0, makes connections stop forwarding server→client
	// after a random byte count in [StallAfter/2, StallAfter*3/2) and hang,
	// with both sockets open, until the client closes its side, the
	// connection is cut by CutAll, or the proxy is closed.
	StallAfter int64
	// StallProbability in [0,1] is the share of connections that stall; 0
	// means 1 when StallAfter > 0.
	StallProbability float64
	// RefuseFor is how long new connections are refused (accepted and reset
	// at once) after Start when RefuseAtStart is true.
	RefuseFor time.Duration
	// RefuseAtStart makes Start open a refusal window of RefuseFor.
	RefuseAtStart bool
	// Latency is added before every forwarded chunk in both directions.
	Latency time.Duration
	// StripNoCodes rewrites every tagged NO response server→client from
	// "tag NO [CODE] text" to "tag NO text", as older servers (MailEnable)
	// refuse a login: without [AUTHENTICATIONFAILED] or any other code.
	// It follows IMAP literals ({n} at a line's end: the n bytes after it
	// pass untouched), so message bodies are never rewritten. Cut and
	// stall offsets count the bytes after the rewrite. Fixed per
	// connection when it is accepted.
	StripNoCodes bool
}

// Stats counts what the proxy did since Start.
type Stats struct {
	Connections int64 // connections accepted and forwarded (refused ones excluded)
	Open        int64 // connections forwarding right now
	Cut         int64 // connections reset by CutAfter or CutAll
	Stalled     int64 // connections that hit StallAfter
	Refused     int64 // connections reset at accept during a refusal window
	Stripped    int64 // tagged NO responses StripNoCodes rewrote
	BytesUp     int64 // bytes forwarded client→server
	BytesDown   int64 // bytes forwarded server→client
}

// Proxy forwards TCP connections from a loopback listener to a target,
// injecting Faults. All methods are safe for concurrent use.
type Proxy struct {
	ln      net.Listener
	target  string
	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	latency atomic.Int64
	gen     atomic.Uint64    // bumped by SetFaults; older fault plans are void
	now     func() time.Time // opens and closes refusal windows; a fake in tests

	mu          sync.Mutex
	faults      Faults
	rng         *rand.Rand
	refuseUntil time.Time
	conns       map[*pconn]struct{}
	closed      bool

	connections, cut, stalled, refused, stripped, bytesUp, bytesDown atomic.Int64
}

// pconn is one proxied connection.
type pconn struct {
	p              *Proxy
	client, server *net.TCPConn
	gen            uint64       // p.gen when cutAt and stallAt were drawn
	cutAt, stallAt int64        // server→client offsets; -1 = none
	stalledNow     atomic.Bool  // the down copier is hanging
	upDone         atomic.Bool  // the client closed its sending side
	halves         atomic.Int32 // directions that ended with EOF
	done           chan struct{}
	once           sync.Once

	// strip rewrites server→client bytes (StripNoCodes); nil: none.
	strip *noCodeStripper
}

// Start listens on 127.0.0.1:0 and forwards every accepted connection to
// target, applying f. seed makes fault choices reproducible. Cancelling ctx
// shuts the proxy down like Close, but only Close waits for its goroutines.
func Start(ctx context.Context, target string, f Faults, seed uint64) (*Proxy, error) {
	return start(ctx, target, f, seed, time.Now)
}

// start is Start with the clock that opens and closes refusal windows.
func start(ctx context.Context, target string, f Faults, seed uint64, now func() time.Time) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &Proxy{
		ln:     ln,
		target: target,
		faults: f,
		rng:    rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
		conns:  make(map[*pconn]struct{}),
		now:    now,
	}
	p.ctx, p.cancel = context.WithCancel(ctx)
	p.latency.Store(int64(f.Latency))
	if f.RefuseAtStart {
		p.refuseUntil = now().Add(f.RefuseFor)
	}
	p.wg.Add(2)
	go func() {
		defer p.wg.Done()
		<-p.ctx.Done()
		p.shutdown()
	}()
	go p.acceptLoop()
	return p, nil
}

// Addr returns the proxy's listening address, host:port on 127.0.0.1.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// SetFaults replaces the faults at run time, e.g. to stop them so a
// migration can finish. Open connections drop any cut or stall they have not
// hit yet (connections already stalled stay stalled); connections accepted
// from now on draw from f. The latency applies at once; RefuseAtStart is
// ignored (use Refuse).
func (p *Proxy) SetFaults(f Faults) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.faults = f
	p.latency.Store(int64(f.Latency))
	p.gen.Add(1)
}

// Refuse resets every new connection for d from now; d <= 0 ends any
// refusal window. Open connections are not affected.
func (p *Proxy) Refuse(d time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.refuseUntil = p.now().Add(d)
}

// CutAll abruptly closes (RST) every open connection, stalled ones included.
func (p *Proxy) CutAll() {
	for _, c := range p.snapshot() {
		c.abort(true)
	}
}

// Stats returns the counters.
func (p *Proxy) Stats() Stats {
	p.mu.Lock()
	open := int64(len(p.conns))
	p.mu.Unlock()
	return Stats{
		Connections: p.connections.Load(),
		Open:        open,
		Cut:         p.cut.Load(),
		Stalled:     p.stalled.Load(),
		Refused:     p.refused.Load(),
		Stripped:    p.stripped.Load(),
		BytesUp:     p.bytesUp.Load(),
		BytesDown:   p.bytesDown.Load(),
	}
}

// Close stops listening, closes every connection and waits until all of the
// proxy's goroutines have returned. It is safe to call more than once.
func (p *Proxy) Close() error {
	p.shutdown()
	p.wg.Wait()
	return nil
}

func (p *Proxy) snapshot() []*pconn {
	p.mu.Lock()
	defer p.mu.Unlock()
	cs := make([]*pconn, 0, len(p.conns))
	for c := range p.conns {
		cs = append(cs, c)
	}
	return cs
}

func (p *Proxy) shutdown() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	p.mu.Unlock()
	p.cancel()
	p.ln.Close()
	for _, c := range p.snapshot() {
		c.abort(false)
	}
}

// offset draws whether a fault with the given size and probability hits a
// connection and at which server→client byte offset; -1 means it does not.
// It always consumes two draws so one fault's settings do not shift another's.
func offset(r *rand.Rand, after int64, prob float64) int64 {
	hit, at := r.Float64(), r.Int64N(max(after, 1))
	if after <= 0 {
		return -1
	}
	if prob <= 0 {
		prob = 1
	}
	if hit >= prob {
		return -1
	}
	return after/2 + at
}

func (p *Proxy) acceptLoop() {
	defer p.wg.Done()
	for {
		nc, err := p.ln.Accept()
		if err != nil {
			if p.ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			select { // transient error such as EMFILE: back off briefly
			case <-time.After(10 * time.Millisecond):
			case <-p.ctx.Done():
			}
			continue
		}
		client := nc.(*net.TCPConn)
		p.mu.Lock()
		refusing := p.now().Before(p.refuseUntil)
		c := &pconn{p: p, client: client, done: make(chan struct{}), gen: p.gen.Load()}
		c.cutAt = offset(p.rng, p.faults.CutAfter, p.faults.CutProbability)
		c.stallAt = offset(p.rng, p.faults.StallAfter, p.faults.StallProbability)
		if p.faults.StripNoCodes {
			c.strip = &noCodeStripper{atStart: true, count: &p.stripped}
		}
		p.mu.Unlock()
		if refusing {
			client.SetLinger(0)
			client.Close()
			p.refused.Add(1)
			continue
		}
		p.connections.Add(1)
		p.wg.Add(1)
		go p.handle(c)
	}
}

func (p *Proxy) handle(c *pconn) {
	defer p.wg.Done()
	d := net.Dialer{Timeout: 10 * time.Second}
	sc, err := d.DialContext(p.ctx, "tcp", p.target)
	if err != nil {
		c.client.SetLinger(0)
		c.client.Close()
		return
	}
	c.server = sc.(*net.TCPConn)
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		c.client.Close()
		c.server.Close()
		return
	}
	p.conns[c] = struct{}{}
	p.mu.Unlock()
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		c.pipe(c.client, c.server, false)
	}()
	c.pipe(c.server, c.client, true)
}

// abort closes both sockets, with RST and counted as a cut when rst is set,
// and releases a stall. Stats are updated before the peers can notice.
func (c *pconn) abort(rst bool) {
	c.once.Do(func() {
		c.p.mu.Lock()
		delete(c.p.conns, c)
		c.p.mu.Unlock()
		if rst {
			c.p.cut.Add(1)
			c.client.SetLinger(0)
			c.server.SetLinger(0)
		}
		c.client.Close()
		c.server.Close()
		close(c.done)
	})
}

// pipe copies src to dst until EOF, an error or a fault; down marks the
// server→client direction, the only one that faults or is rewritten.
func (c *pconn) pipe(src, dst *net.TCPConn, down bool) {
	buf := make([]byte, 32<<10)
	var pos int64
	for {
		n, err := src.Read(buf)
		data := buf[:n]
		if down && c.strip != nil {
			data = c.strip.feed(data) // empty while a line is incomplete
		}
		if len(data) > 0 {
			if lat := time.Duration(c.p.latency.Load()); lat > 0 {
				t := time.NewTimer(lat)
				select {
				case <-t.C:
				case <-c.done:
					t.Stop()
					return
				}
			}
			if down && c.gen == c.p.gen.Load() {
				if at := c.cutAt; at >= 0 && pos+int64(len(data)) >= at {
					c.forward(dst, data[:at-pos], down)
					c.abort(true)
					return
				}
				if at := c.stallAt; at >= 0 && pos+int64(len(data)) >= at {
					c.forward(dst, data[:at-pos], down)
					c.p.stalled.Add(1)
					c.stalledNow.Store(true)
					if c.upDone.Load() { // the client has already given up
						c.abort(false)
					}
					<-c.done
					return
				}
			}
			if !c.forward(dst, data, down) {
				return
			}
			pos += int64(len(data))
		}
		if err != nil {
			if !errors.Is(err, io.EOF) {
				c.abort(false)
				return
			}
			if down && c.strip != nil && len(c.strip.line) > 0 {
				// An unfinished last line, as it came.
				if !c.forward(dst, c.strip.line, down) {
					return
				}
			}
			if !down {
				c.upDone.Store(true)
				if c.stalledNow.Load() {
					c.abort(false)
					return
				}
			}
			dst.CloseWrite()
			if c.halves.Add(1) == 2 {
				c.abort(false)
			}
			return
		}
	}
}

// forward writes data to dst and counts it; on failure it tears c down.
func (c *pconn) forward(dst *net.TCPConn, data []byte, down bool) bool {
	n, err := dst.Write(data)
	if down {
		c.p.bytesDown.Add(int64(n))
	} else {
		c.p.bytesUp.Add(int64(n))
	}
	if err != nil {
		c.abort(false)
		return false
	}
	return true
}

// noCodeStripper is StripNoCodes for one connection's server→client
// bytes: it holds back the line being read (outside literals) until its
// end, rewrites it when it is a tagged NO with a response code, and passes
// literals through untouched.
type noCodeStripper struct {
	line []byte // the line read so far, outside literals
	lit  int64  // literal bytes still to pass through untouched
	// atStart says line begins a response (it is not what follows a
	// literal inside one).
	atStart bool
	out     []byte
	count   *atomic.Int64 // lines rewritten
}

// feed takes the next bytes from the server and returns what may go to
// the client now; the slice is valid until the next call.
func (s *noCodeStripper) feed(p []byte) []byte {
	s.out = s.out[:0]
	for len(p) > 0 {
		if s.lit > 0 {
			n := min(s.lit, int64(len(p)))
			s.out = append(s.out, p[:n]...)
			s.lit -= n
			p = p[n:]
			continue
		}
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			s.line = append(s.line, p...)
			break
		}
		s.line = append(s.line, p[:i+1]...)
		p = p[i+1:]
		out := s.line
		if s.atStart {
			if r, ok := stripNoCode(s.line); ok {
				out = r
				s.count.Add(1)
			}
		}
		s.out = append(s.out, out...)
		// After a literal ({0} too) the same response goes on.
		n, lit := literalAtEnd(s.line)
		s.lit, s.atStart = n, !lit
		s.line = s.line[:0]
	}
	return s.out
}

// literalAtEnd returns the size of the literal a line (with its line end)
// announces at its end ({n}, {n+} or ~{n}), and whether it announces one.
func literalAtEnd(line []byte) (int64, bool) {
	l := bytes.TrimSuffix(bytes.TrimSuffix(line, []byte("\n")), []byte("\r"))
	if !bytes.HasSuffix(l, []byte("}")) {
		return 0, false
	}
	open := bytes.LastIndexByte(l, '{')
	if open < 0 {
		return 0, false
	}
	digits := bytes.TrimSuffix(l[open+1:len(l)-1], []byte("+"))
	if len(digits) == 0 || len(digits) > 18 {
		return 0, false
	}
	var n int64
	for _, d := range digits {
		if d < '0' || d > '9' {
			return 0, false
		}
		n = n*10 + int64(d-'0')
	}
	return n, true
}

// stripNoCode returns line without its response code when it is a tagged
// NO with one ("a1 NO [AUTHENTICATIONFAILED] Failed\r\n" → "a1 NO
// Failed\r\n").
func stripNoCode(line []byte) ([]byte, bool) {
	sp := bytes.IndexByte(line, ' ')
	if sp <= 0 || line[0] == '*' || line[0] == '+' {
		return nil, false
	}
	rest := line[sp+1:]
	if len(rest) < 4 || !bytes.EqualFold(rest[:3], []byte("NO ")) || rest[3] != '[' {
		return nil, false
	}
	end := bytes.IndexByte(rest, ']')
	if end < 0 {
		return nil, false
	}
	text := bytes.TrimPrefix(rest[end+1:], []byte(" "))
	out := make([]byte, 0, len(line))
	out = append(out, line[:sp+1]...)
	out = append(out, rest[:3]...)
	return append(out, text...), true
}
