package signin

import (
	"context"
	"sync"
	"time"
)

// gate bounds password hashing, the one piece of work an anonymous
// request can make the service do: at most slots units at once (a unit
// is one argon2id of the configured memory, so hashing takes at most
// slots × that memory), at most queue requests waiting, none longer than
// wait. Whoever finds the queue full or waits too long gets ErrBusy.
type gate struct {
	slots, queue int
	wait         time.Duration

	mu      sync.Mutex
	used    int
	waiting int
	// freed is closed (and replaced) whenever units are given back.
	freed chan struct{}
}

func newGate(slots, queue int, wait time.Duration) *gate {
	return &gate{slots: slots, queue: queue, wait: wait, freed: make(chan struct{})}
}

// acquire takes units (at least one, at most all) and returns their
// release.
func (g *gate) acquire(ctx context.Context, units int) (func(), error) {
	units = min(max(units, 1), g.slots)
	var timeout <-chan time.Time
	queued := false
	g.mu.Lock()
	for {
		if g.used+units <= g.slots {
			g.used += units
			if queued {
				g.waiting--
			}
			g.mu.Unlock()
			return func() { g.release(units) }, nil
		}
		if !queued {
			if g.waiting >= g.queue {
				g.mu.Unlock()
				return nil, ErrBusy
			}
			g.waiting++
			queued = true
			t := time.NewTimer(g.wait)
			defer t.Stop()
			timeout = t.C
		}
		freed := g.freed
		g.mu.Unlock()
		select {
		case <-freed:
		case <-timeout:
			g.leave()
			return nil, ErrBusy
		case <-ctx.Done():
			g.leave()
			return nil, ErrBusy
		}
		g.mu.Lock()
	}
}

func (g *gate) leave() {
	g.mu.Lock()
	g.waiting--
	g.mu.Unlock()
}

func (g *gate) release(units int) {
	g.mu.Lock()
	g.used -= units
	close(g.freed)
	g.freed = make(chan struct{})
	g.mu.Unlock()
}

// inUse reports the units taken and the requests waiting.
func (g *gate) inUse() (used, waiting int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.used, g.waiting
}
