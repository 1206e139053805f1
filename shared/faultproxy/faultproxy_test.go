package faultproxy

import (
	"bytes"
	"context"
	crand "crypto/rand"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"runtime"
	"sync"
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

	got, err := readUntilErr(t, c, 300*time.Millisecond)
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read ended with %v after %d bytes; want a timeout", err, got)
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

func TestRefuseFailsConnectionsDuringWindowOnly(t *testing.T) {
	const window = 400 * time.Millisecond
	tests := []struct {
		name   string
		faults Faults
		refuse func(p *Proxy)
	}{
		{"Refuse call", Faults{}, func(p *Proxy) { p.Refuse(window) }},
		{"RefuseAtStart", Faults{RefuseFor: window, RefuseAtStart: true}, func(*Proxy) {}},
	}
	b := startBackend(t, echo)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := startProxy(t, b.addr(), tt.faults)
			start := time.Now()
			tt.refuse(p)
			err := roundTrip(p.Addr())
			if time.Since(start) > window {
				t.Skip("machine too slow to probe inside the refusal window")
			}
			if err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("round trip during refusal: %v; want a fast failure", err)
			}
			time.Sleep(time.Until(start.Add(window + 50*time.Millisecond)))
			if err := roundTrip(p.Addr()); err != nil {
				t.Fatalf("round trip after refusal: %v", err)
			}
			if s := p.Stats(); s.Refused < 1 || s.Connections != 1 {
				t.Fatalf("stats = %+v", s)
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
	const lat = 100 * time.Millisecond
	b := startBackend(t, echo)
	p := startProxy(t, b.addr(), Faults{Latency: lat})
	tests := []struct {
		name     string
		latency  time.Duration
		min, max time.Duration
	}{
		{"latency on both directions", lat, 2 * lat, time.Second},
		{"latency removed at run time", 0, 0, lat},
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
