package imapdial

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-imap/v2/imapclient"
)

// clock records when a connection last made progress.
type clock struct {
	base time.Time
	last atomic.Int64 // nanoseconds since base of the last progress
}

func newClock() *clock { return &clock{base: time.Now()} }

func (k *clock) touch() { k.last.Store(int64(time.Since(k.base))) }

func (k *clock) idle() time.Duration {
	return time.Since(k.base) - time.Duration(k.last.Load())
}

// progressConn counts every byte moved in either direction as progress. A
// per-direction deadline would be wrong for appends: while a 30 MB literal
// goes out nothing comes back, and while the server fsyncs nothing goes
// out.
type progressConn struct {
	net.Conn
	clock *clock
}

func (p *progressConn) Read(b []byte) (int, error) {
	n, err := p.Conn.Read(b)
	if n > 0 {
		p.clock.touch()
	}
	return n, err
}

func (p *progressConn) Write(b []byte) (int, error) {
	n, err := p.Conn.Write(b)
	if n > 0 {
		p.clock.touch()
	}
	return n, err
}

// Watchdog closes a connection when it makes no progress for a while or
// when its context ends, so a stalled server fails a command instead of
// hanging it: closing unblocks every read and write in flight. Progress is
// a Kick, and on a Conn also every byte moved. Stop it when the command is
// done.
type Watchdog struct {
	clock *clock
	d     time.Duration
	ctx   context.Context
	close func()

	mu      sync.Mutex
	timer   *time.Timer
	stopped bool
	fired   bool // no progress for d
	stopCtx func() bool
}

// Watch starts a watchdog over a go-imap client with idle timeout d
// (d <= 0: only ctx ends it). Its progress is what the caller Kicks.
func Watch(ctx context.Context, c *imapclient.Client, d time.Duration) *Watchdog {
	return watch(ctx, newClock(), d, func() { c.Close() })
}

func watch(ctx context.Context, k *clock, d time.Duration, closeConn func()) *Watchdog {
	w := &Watchdog{clock: k, d: d, ctx: ctx, close: closeConn}
	k.touch()
	if d > 0 {
		w.timer = time.AfterFunc(d, w.check)
	}
	w.stopCtx = context.AfterFunc(ctx, closeConn)
	return w
}

// check runs on the timer: it fires when the connection has been idle for
// d and otherwise re-arms for the rest of d. Checking a timestamp instead
// of resetting the timer on every unit of progress keeps the hot path to
// one atomic store.
func (w *Watchdog) check() {
	w.mu.Lock()
	if w.stopped {
		w.mu.Unlock()
		return
	}
	idle := w.clock.idle()
	if idle < w.d {
		w.timer.Reset(w.d - idle)
		w.mu.Unlock()
		return
	}
	w.fired = true
	w.mu.Unlock()
	// Outside the lock: closing a go-imap client waits for its reader.
	w.close()
}

// Kick records progress.
func (w *Watchdog) Kick() { w.clock.touch() }

// Stop ends the watch; it reports whether the watchdog had closed the
// connection for want of progress.
func (w *Watchdog) Stop() (timedOut bool) {
	w.mu.Lock()
	w.stopped = true
	if w.timer != nil {
		w.timer.Stop()
	}
	fired := w.fired
	w.mu.Unlock()
	w.stopCtx()
	return fired
}

// Err turns an error from a watched command into one that says why the
// connection closed under it: no progress, or the context ended.
func (w *Watchdog) Err(err error) error {
	if err == nil {
		return nil
	}
	w.mu.Lock()
	fired := w.fired
	w.mu.Unlock()
	if fired {
		return fmt.Errorf("no progress for %s, connection closed: %w", w.d, err)
	}
	if cerr := w.ctx.Err(); cerr != nil && !errors.Is(err, cerr) {
		return fmt.Errorf("connection closed: %w: %w", cerr, err)
	}
	return err
}

// Abort closes c's connection without waiting for its reader goroutine,
// which may be parked until the literal in hand is read. The caller then
// drains the command in hand (its reads fail at once) or, when a literal
// read already failed, leaves it alone: go-imap would read that literal
// again, racing with its own reader.
func Abort(c *imapclient.Client) {
	go c.Close() // returns once the reader has seen the closed connection
}
