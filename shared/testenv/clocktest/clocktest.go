// Package clocktest is a clock tests set by hand, for code that takes a
// func() time.Time.
package clocktest

import (
	"sync"
	"time"
)

// Clock is a time that moves only when Add says; safe for concurrent use.
type Clock struct {
	mu  sync.Mutex
	now time.Time
}

// New is a clock at t.
func New(t time.Time) *Clock { return &Clock{now: t} }

// Now is the clock's time; pass c.Now where a func() time.Time is wanted.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Add moves the clock by d.
func (c *Clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}
