package imapappend

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// progressConn records when bytes last moved in either direction. A
// per-direction deadline would be wrong here: while a 30 MB literal goes
// out nothing comes back, and while the server fsyncs nothing goes out.
type progressConn struct {
	net.Conn
	base time.Time
	last atomic.Int64 // nanoseconds since base of the last progress
}

func newProgressConn(c net.Conn) *progressConn {
	return &progressConn{Conn: c, base: time.Now()}
}

func (p *progressConn) Read(b []byte) (int, error) {
	n, err := p.Conn.Read(b)
	if n > 0 {
		p.touch()
	}
	return n, err
}

func (p *progressConn) Write(b []byte) (int, error) {
	n, err := p.Conn.Write(b)
	if n > 0 {
		p.touch()
	}
	return n, err
}

func (p *progressConn) touch() { p.last.Store(int64(time.Since(p.base))) }

func (p *progressConn) idle() time.Duration {
	return time.Since(p.base) - time.Duration(p.last.Load())
}

// guard watches one command (or the login): it closes the connection when
// no byte moves for the command timeout or when ctx ends, which unblocks
// every read and write of the command. It owns one timer and one context
// callback; stop releases both.
type guard struct {
	pc      *progressConn
	d       time.Duration
	mu      sync.Mutex
	timer   *time.Timer
	stopped bool
	fired   bool // no progress for d
	stopCtx func() bool
	ctx     context.Context
}

// watch starts a guard over pc; d <= 0 disables the progress timeout.
func watch(ctx context.Context, pc *progressConn, d time.Duration) *guard {
	g := &guard{pc: pc, d: d, ctx: ctx}
	pc.touch()
	if d > 0 {
		g.timer = time.AfterFunc(d, g.check)
	}
	g.stopCtx = context.AfterFunc(ctx, func() { pc.Conn.Close() })
	return g
}

// check runs on the timer: it fires when the connection has been idle for
// d and otherwise re-arms for the rest of d. Checking a timestamp instead
// of resetting the timer on every write keeps the hot path to one atomic
// store.
func (g *guard) check() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.stopped {
		return
	}
	idle := g.pc.idle()
	if idle >= g.d {
		g.fired = true
		g.pc.Conn.Close()
		return
	}
	g.timer.Reset(g.d - idle)
}

// stop releases the guard.
func (g *guard) stop() {
	g.mu.Lock()
	g.stopped = true
	if g.timer != nil {
		g.timer.Stop()
	}
	g.mu.Unlock()
	g.stopCtx()
}

// explain turns an I/O error caused by the guard closing the connection
// into one that says why.
func (g *guard) explain(err error) error {
	if err == nil {
		return nil
	}
	g.mu.Lock()
	fired := g.fired
	g.mu.Unlock()
	if fired {
		return fmt.Errorf("no progress for %s, connection closed: %w", g.d, err)
	}
	if cerr := g.ctx.Err(); cerr != nil && !errors.Is(err, cerr) {
		return fmt.Errorf("connection closed: %w: %w", cerr, err)
	}
	return err
}
