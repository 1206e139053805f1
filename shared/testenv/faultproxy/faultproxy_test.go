package faultproxy

import (
	"bytes"
	"context"
	crand "crypto/rand"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// backend is a loopback server the proxy forwards to.
type backend struct {
	ln net.Listener
	wg sync.WaitGroup
}

// startBackend serves every connection with serve until the test ends.
func startBackend(t *testing.T, serve func(net.Conn)) *backend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &backend{ln: ln}
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			b.wg.Add(1)
			go func() {
				defer b.wg.Done()
				defer c.Close()
				serve(c)
			}()
		}
	}()
	t.Cleanup(func() { ln.Close(); b.wg.Wait() })
	return b
}

func (b *backend) addr() string { return b.ln.Addr().String() }

// echo copies everything back until the client half-closes.
func echo(c net.Conn) { io.Copy(c, c) }

// stream returns a server that writes data then closes.
func stream(data []byte) func(net.Conn) {
	return func(c net.Conn) { c.Write(data) }
}

func randomBytes(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := crand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func startProxy(t *testing.T, target string, f Faults) *Proxy {
	t.Helper()
	p, err := Start(context.Background(), target, f, 42)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func dial(t *testing.T, addr string) *net.TCPConn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c.(*net.TCPConn)
}

// readUntilErr reads until an error, each read bounded by per, and returns
// the byte count and the error.
func readUntilErr(t *testing.T, c net.Conn, per time.Duration) (int64, error) {
	t.Helper()
	buf := make([]byte, 32<<10)
	var got int64
	for {
		c.SetReadDeadline(time.Now().Add(per))
		n, err := c.Read(buf)
		got += int64(n)
		if err != nil {
			return got, err
		}
	}
}

// readUntilStalled reads c until p has counted a stall and everything it
// forwarded before the stall has been read, and returns the byte count. A
// read timeout alone could be a slow machine, not a stall.
func readUntilStalled(t *testing.T, c net.Conn, p *Proxy, within time.Duration) (int64, error) {
	t.Helper()
	deadline := time.Now().Add(within)
	var got int64
	for {
		// The proxy writes what precedes the stall before counting it,
		// so once the count is seen, a read that times out has all of it.
		stalled := p.Stats().Stalled > 0
		n, err := readUntilErr(t, c, 200*time.Millisecond)
		got += n
		switch {
		case !errors.Is(err, os.ErrDeadlineExceeded):
			return got, fmt.Errorf("read ended with %v after %d bytes; want a stall", err, got)
		case stalled:
			return got, nil
		case time.Now().After(deadline):
			return got, fmt.Errorf("no stall counted after %d bytes and %v", got, within)
		}
	}
}

// dialAndDrain connects and reads until an error. A cut can come so early
// that the dial itself sees the reset; that counts as 0 bytes read.
func dialAndDrain(t *testing.T, addr string, per time.Duration) (int64, error) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	return readUntilErr(t, c, per)
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestZeroFaultsForwardsBytesUnchangedBothWays(t *testing.T) {
	payload := randomBytes(t, 1<<20)
	tests := []struct {
		name  string
		serve func(net.Conn)
		send  []byte
		want  []byte
	}{
		{"echo of 1 MiB comes back identical", echo, payload, payload},
		{"1 MiB stream then close arrives whole with EOF", stream(payload), nil, payload},
		{"empty stream yields plain EOF", stream(nil), nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := startBackend(t, tt.serve)
			p := startProxy(t, b.addr(), Faults{})
			c := dial(t, p.Addr())
			errc := make(chan error, 1)
			go func() {
				_, err := c.Write(tt.send)
				if err == nil {
					err = c.CloseWrite()
				}
				errc <- err
			}()
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			got, err := io.ReadAll(c)
			if err != nil {
				t.Fatalf("read: %v", err)
			}
			if err := <-errc; err != nil {
				t.Fatalf("write: %v", err)
			}
			if !bytes.Equal(got, tt.want) {
				t.Fatalf("got %d bytes, want %d identical bytes", len(got), len(tt.want))
			}
			waitFor(t, "connection to close", 15*time.Second, func() bool { return p.Stats().Open == 0 })
			s := p.Stats()
			if s.BytesUp != int64(len(tt.send)) || s.BytesDown != int64(len(tt.want)) || s.Connections != 1 || s.Cut+s.Stalled+s.Refused != 0 {
				t.Fatalf("stats = %+v", s)
			}
		})
	}
}

func TestCutAfterResetsConnectionMidStream(t *testing.T) {
	const total = 4 << 20
	tests := []struct {
		name     string
		cutAfter int64
	}{
		{"cut around 64 KiB", 64 << 10},
		{"cut around 1 MiB", 1 << 20},
		{"cut on first byte", 1},
	}
	b := startBackend(t, stream(randomBytes(t, total)))
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := startProxy(t, b.addr(), Faults{CutAfter: tt.cutAfter})
			got, err := dialAndDrain(t, p.Addr(), 5*time.Second)
			if errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("read timed out after %d bytes; want a cut", got)
			}
			if limit := tt.cutAfter * 3 / 2; got > limit || got >= total {
				t.Fatalf("client got %d bytes, want at most %d", got, limit)
			}
			if s := p.Stats(); s.Cut != 1 || s.BytesDown > tt.cutAfter*3/2 {
				t.Fatalf("stats = %+v", s)
			}
		})
	}
}

func TestCutProbabilityCutsOnlyThatShareOfConnections(t *testing.T) {
	const n = 40
	b := startBackend(t, stream(randomBytes(t, 256<<10)))
	p := startProxy(t, b.addr(), Faults{CutAfter: 16 << 10, CutProbability: 0.5})
	for range n {
		dialAndDrain(t, p.Addr(), 5*time.Second)
	}
	if cut := p.Stats().Cut; cut < n/5 || cut > n*4/5 {
		t.Fatalf("cut %d of %d connections with probability 0.5", cut, n)
	}
}

func TestStallAfterHangsMidStreamWithConnectionOpen(t *testing.T) {
	const total = 4 << 20
	// The server writes everything it can, then waits for its peer to go away.
	serverDone := make(chan struct{})
	data := randomBytes(t, total)
	b := startBackend(t, func(c net.Conn) {
		defer close(serverDone)
		c.Write(data)
		io.Copy(io.Discard, c)
	})
	const stallAfter = 256 << 10
	p := startProxy(t, b.addr(), Faults{StallAfter: stallAfter, StallProbability: 1})
	c := dial(t, p.Addr())

	got, err := readUntilStalled(t, c, p, 15*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if got < stallAfter/2 || got >= stallAfter*3/2 {
		t.Fatalf("stalled after %d bytes, want [%d, %d)", got, stallAfter/2, stallAfter*3/2)
	}
	// Still open: a second read times out again instead of seeing EOF or a reset.
	if n, err := readUntilErr(t, c, 200*time.Millisecond); n != 0 || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("second read: %d bytes, %v; want a timeout", n, err)
	}
	if s := p.Stats(); s.Stalled != 1 || s.Open != 1 {
		t.Fatalf("stats = %+v", s)
	}
	select {
	case <-serverDone:
		t.Fatal("proxy closed the server side of a stalled connection")
	default:
	}
	// The client gives up; the proxy must release both sides.
	c.Close()
	waitFor(t, "stalled connection to close", 15*time.Second, func() bool { return p.Stats().Open == 0 })
	select {
	case <-serverDone:
	case <-time.After(2 * time.Second):
		t.Fatal("server side still open after the client gave up")
	}
}

// roundTrip sends one line through an echo connection and reports any error.
func roundTrip(addr string) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Write([]byte("ping\n")); err != nil {
		return err
	}
	buf := make([]byte, 5)
	if _, err := io.ReadFull(c, buf); err != nil {
		return err
	}
	if string(buf) != "ping\n" {
		return errors.New("echo mismatch")
	}
	return nil
}

// fakeClock is a clock that moves only when told to.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// TestRefuseFailsConnectionsDuringWindowOnly moves the proxy's clock
// instead of waiting for the window to pass, so a probe is never too slow
// to land inside it and the window's last instant can be tested.
func TestRefuseFailsConnectionsDuringWindowOnly(t *testing.T) {
	const window = time.Minute
	type step struct {
		name    string
		act     func(p *Proxy, c *fakeClock)
		refused bool
	}
	nothing := func(*Proxy, *fakeClock) {}
	advance := func(d time.Duration) func(*Proxy, *fakeClock) {
		return func(_ *Proxy, c *fakeClock) { c.advance(d) }
	}
	tests := []struct {
		name   string
		faults Faults
		steps  []step
	}{
		{"Refuse call refuses until its window ends", Faults{}, []step{
			{"before Refuse", nothing, false},
			{"right after Refuse", func(p *Proxy, _ *fakeClock) { p.Refuse(window) }, true},
			{"last instant of the window", advance(window - time.Nanosecond), true},
			{"window over", advance(time.Nanosecond), false},
		}},
		{"RefuseAtStart refuses from Start for RefuseFor", Faults{RefuseFor: window, RefuseAtStart: true}, []step{
			{"right after Start", nothing, true},
			{"last instant of the window", advance(window - time.Nanosecond), true},
			{"window over", advance(time.Nanosecond), false},
		}},
		{"Refuse(0) ends a window early", Faults{}, []step{
			{"inside an hour's window", func(p *Proxy, _ *fakeClock) { p.Refuse(time.Hour) }, true},
			{"after Refuse(0)", func(p *Proxy, _ *fakeClock) { p.Refuse(0) }, false},
		}},
	}
	b := startBackend(t, echo)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := &fakeClock{t: time.Date(2026, 11, 27, 0, 0, 0, 0, time.UTC)}
			p, err := start(context.Background(), b.addr(), tt.faults, 42, clock.now)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { p.Close() })
			var refused, forwarded int64
			for _, st := range tt.steps {
				st.act(p, clock)
				err := roundTrip(p.Addr())
				switch {
				case st.refused && (err == nil || errors.Is(err, os.ErrDeadlineExceeded)):
					t.Fatalf("%s: round trip %v; want a fast failure", st.name, err)
				case !st.refused && err != nil:
					t.Fatalf("%s: round trip %v; want it forwarded", st.name, err)
				case st.refused:
					refused++
				default:
					forwarded++
				}
			}
			if s := p.Stats(); s.Refused != refused || s.Connections != forwarded {
				t.Fatalf("stats = %+v, want %d refused and %d forwarded", s, refused, forwarded)
			}
		})
	}
}

func TestCutAllResetsEveryOpenConnection(t *testing.T) {
	b := startBackend(t, echo)
	p := startProxy(t, b.addr(), Faults{})
	const n = 3
	conns := make([]*net.TCPConn, n)
	for i := range conns {
		conns[i] = dial(t, p.Addr())
		conns[i].Write([]byte("x"))
		if _, err := io.ReadFull(conns[i], make([]byte, 1)); err != nil {
			t.Fatal(err)
		}
	}
	p.CutAll()
	for i, c := range conns {
		got, err := readUntilErr(t, c, 2*time.Second)
		if got != 0 || err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("conn %d after CutAll: %d bytes, %v; want a reset or EOF", i, got, err)
		}
	}
	if s := p.Stats(); s.Cut != n || s.Open != 0 {
		t.Fatalf("stats = %+v", s)
	}
	if err := roundTrip(p.Addr()); err != nil {
		t.Fatalf("new connection after CutAll: %v", err)
	}
}

func TestSetFaultsStopsPendingFaults(t *testing.T) {
	payload := randomBytes(t, 1<<20)
	b := startBackend(t, echo)
	p := startProxy(t, b.addr(), Faults{CutAfter: 256 << 10})
	c := dial(t, p.Addr())
	p.SetFaults(Faults{})
	go func() { c.Write(payload); c.CloseWrite() }()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	got, err := io.ReadAll(c)
	if err != nil || !bytes.Equal(got, payload) {
		t.Fatalf("got %d bytes, %v; want the whole payload", len(got), err)
	}
}

func TestOffsetIsReproducibleAndInRange(t *testing.T) {
	tests := []struct {
		name      string
		after     int64
		prob      float64
		wantNone  bool
		wantEvery bool
	}{
		{"disabled", 0, 1, true, false},
		{"probability 0 means always", 1000, 0, false, true},
		{"probability 1", 1000, 1, false, true},
		{"half", 1000, 0.5, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r1 := rand.New(rand.NewPCG(7, 7^0x9e3779b97f4a7c15))
			r2 := rand.New(rand.NewPCG(7, 7^0x9e3779b97f4a7c15))
			hits := 0
			for range 200 {
				a, b := offset(r1, tt.after, tt.prob), offset(r2, tt.after, tt.prob)
				if a != b {
					t.Fatalf("same seed drew %d and %d", a, b)
				}
				if a >= 0 {
					hits++
					if a < tt.after/2 || a >= tt.after*3/2 {
						t.Fatalf("offset %d outside [%d, %d)", a, tt.after/2, tt.after*3/2)
					}
				}
			}
			if tt.wantNone && hits != 0 || tt.wantEvery && hits != 200 || !tt.wantNone && !tt.wantEvery && (hits < 60 || hits > 140) {
				t.Fatalf("%d of 200 hit", hits)
			}
		})
	}
}

func TestCloseIsPromptAndLeaksNoGoroutines(t *testing.T) {
	streamer := startBackend(t, stream(randomBytes(t, 4<<20)))
	echoer := startBackend(t, echo)
	base := runtime.NumGoroutine()

	stalling, err := Start(context.Background(), streamer.addr(), Faults{StallAfter: 64 << 10, Latency: time.Millisecond}, 1)
	if err != nil {
		t.Fatal(err)
	}
	idle, err := Start(context.Background(), echoer.addr(), Faults{}, 1)
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		c := dial(t, stalling.Addr())
		readUntilErr(t, c, 200*time.Millisecond) // now stalled
		dial(t, idle.Addr())
	}
	waitFor(t, "connections to open", 15*time.Second, func() bool {
		return stalling.Stats().Stalled == 3 && idle.Stats().Open == 3
	})

	start := time.Now()
	for _, p := range []*Proxy{stalling, idle} {
		if err := p.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("Close took %v", d)
	}
	if err := stalling.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	waitFor(t, "goroutines to settle", 15*time.Second, func() bool { return runtime.NumGoroutine() <= base })
}

func TestCancelledContextShutsProxyDown(t *testing.T) {
	b := startBackend(t, echo)
	ctx, cancel := context.WithCancel(context.Background())
	p, err := Start(ctx, b.addr(), Faults{}, 1)
	if err != nil {
		t.Fatal(err)
	}
	c := dial(t, p.Addr())
	cancel()
	if got, err := readUntilErr(t, c, 2*time.Second); got != 0 || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("open connection after cancel: %d bytes, %v", got, err)
	}
	if _, err := net.DialTimeout("tcp", p.Addr(), time.Second); err == nil {
		t.Fatal("proxy still accepts after cancel")
	}
	p.Close()
}

func TestLatencyDelaysEveryChunkAndSetFaultsRemovesIt(t *testing.T) {
	// Without latency a loopback round trip must finish before the two
	// chunks' latency would have passed; lat is long enough that a loaded
	// machine's round trip stays well under 2*lat.
	const lat = 300 * time.Millisecond
	b := startBackend(t, echo)
	p := startProxy(t, b.addr(), Faults{Latency: lat})
	tests := []struct {
		name     string
		latency  time.Duration
		min, max time.Duration
	}{
		{"latency on both directions", lat, 2 * lat, 10 * time.Second},
		{"latency removed at run time", 0, 0, 2 * lat},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p.SetFaults(Faults{Latency: tt.latency})
			start := time.Now()
			if err := roundTrip(p.Addr()); err != nil {
				t.Fatal(err)
			}
			if d := time.Since(start); d < tt.min || d > tt.max {
				t.Fatalf("round trip took %v, want [%v, %v]", d, tt.min, tt.max)
			}
		})
	}
}

// imapScript is a server→client IMAP stream with literals whose bodies
// hold lines that look like tagged NO responses, and what StripNoCodes
// makes of it.
const (
	imapScript = "* OK [CAPABILITY IMAP4rev1] ready\r\n" +
		"a1 NO [AUTHENTICATIONFAILED] Authentication failed.\r\n" +
		"a2 OK [READ-ONLY] Examine completed\r\n" +
		"* 1 FETCH (UID 7 BODY[] {40}\r\nSubject: x\r\n\r\na1 NO [X] y\r\nb2 NO [Y] z\r\n FLAGS (\\Seen))\r\n" +
		"* 2 FETCH (BODY[] {0}\r\n UID 8 BODY[HEADER] {13}\r\na3 NO [Q] r\r\n)\r\n" +
		"* NO [ALERT] untagged stays\r\n" +
		"a3 no [UNAVAILABLE] try later\r\n" +
		"a4 NO plain refusal\r\n" +
		"a5 BAD [PARSE] bad stays\r\n" +
		"a6 NO [CODE] last"
	imapStripped = "* OK [CAPABILITY IMAP4rev1] ready\r\n" +
		"a1 NO Authentication failed.\r\n" +
		"a2 OK [READ-ONLY] Examine completed\r\n" +
		"* 1 FETCH (UID 7 BODY[] {40}\r\nSubject: x\r\n\r\na1 NO [X] y\r\nb2 NO [Y] z\r\n FLAGS (\\Seen))\r\n" +
		"* 2 FETCH (BODY[] {0}\r\n UID 8 BODY[HEADER] {13}\r\na3 NO [Q] r\r\n)\r\n" +
		"* NO [ALERT] untagged stays\r\n" +
		"a3 no try later\r\n" +
		"a4 NO plain refusal\r\n" +
		"a5 BAD [PARSE] bad stays\r\n" +
		"a6 NO [CODE] last"
)

func TestStripNoCodesRewritesTaggedRefusalsAndNeverALiteral(t *testing.T) {
	if len("Subject: x\r\n\r\na1 NO [X] y\r\nb2 NO [Y] z\r\n") != 40 || len("a3 NO [Q] r\r\n") != 13 {
		t.Fatal("the script's literal sizes are wrong")
	}
	for _, chunk := range []int{1, 2, 7, 64, len(imapScript)} {
		t.Run(fmt.Sprintf("chunks of %d", chunk), func(t *testing.T) {
			var n atomic.Int64
			s := &noCodeStripper{atStart: true, count: &n}
			var got []byte
			for b := []byte(imapScript); len(b) > 0; {
				k := min(chunk, len(b))
				got = append(got, s.feed(b[:k])...)
				b = b[k:]
			}
			got = append(got, s.line...) // the unfinished last line, as at EOF
			if string(got) != imapStripped {
				t.Errorf("got\n%q\nwant\n%q", got, imapStripped)
			}
			if n.Load() != 2 {
				t.Errorf("%d lines rewritten, want 2", n.Load())
			}
		})
	}
}

func TestStripNoCodesThroughTheProxy(t *testing.T) {
	b := startBackend(t, stream([]byte(imapScript)))
	p := startProxy(t, b.addr(), Faults{StripNoCodes: true})
	c := dial(t, p.Addr())
	if err := c.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != imapStripped {
		t.Errorf("got\n%q\nwant\n%q", got, imapStripped)
	}
	waitFor(t, "connection to close", 15*time.Second, func() bool { return p.Stats().Open == 0 })
	if s := p.Stats(); s.Stripped != 2 || s.BytesDown != int64(len(imapStripped)) {
		t.Errorf("stats = %+v, want 2 stripped and %d bytes down", s, len(imapStripped))
	}
}
