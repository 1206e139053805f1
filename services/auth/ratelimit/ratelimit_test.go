package ratelimit

import (
	"fmt"
	"testing"
	"time"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func newLockout() *Lockout {
	return &Lockout{Max: 3, Window: 10 * time.Minute, Base: time.Minute, MaxLockout: 5 * time.Minute}
}

func TestLockoutLocksAfterMaxFailuresAndExpires(t *testing.T) {
	l := newLockout()
	for i := range 2 {
		if d := l.Fail("a", t0.Add(time.Duration(i)*time.Second)); d != 0 {
			t.Fatalf("failure %d locked out for %v", i+1, d)
		}
		if _, ok := l.Check("a", t0.Add(time.Duration(i)*time.Second)); !ok {
			t.Fatalf("locked after %d failures", i+1)
		}
	}
	if d := l.Fail("a", t0.Add(2*time.Second)); d != time.Minute {
		t.Fatalf("third failure: lockout %v, want 1m", d)
	}
	wait, ok := l.Check("a", t0.Add(32*time.Second))
	if ok || wait != 30*time.Second {
		t.Fatalf("Check during lockout = %v, %v; want 30s, false", wait, ok)
	}
	if _, ok := l.Check("b", t0.Add(32*time.Second)); !ok {
		t.Fatal("another key is locked too")
	}
	if _, ok := l.Check("a", t0.Add(62*time.Second)); !ok {
		t.Fatal("still locked after the lockout")
	}
}

func TestLockoutDoublesUpToTheMaximum(t *testing.T) {
	l := newLockout()
	now := t0
	var got []time.Duration
	for range 5 {
		var d time.Duration
		for range 3 {
			d = l.Fail("a", now)
		}
		got = append(got, d)
		now = now.Add(d)
	}
	want := []time.Duration{time.Minute, 2 * time.Minute, 4 * time.Minute, 5 * time.Minute, 5 * time.Minute}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("lockouts %v, want %v", got, want)
	}
}

func TestLockoutForgetsFailuresOutsideTheWindowAndOnSuccess(t *testing.T) {
	l := newLockout()
	l.Fail("a", t0)
	l.Fail("a", t0)
	if d := l.Fail("a", t0.Add(11*time.Minute)); d != 0 {
		t.Fatal("failures from an old window counted")
	}
	l.Fail("a", t0.Add(11*time.Minute))
	l.Succeed("a")
	if d := l.Fail("a", t0.Add(11*time.Minute)); d != 0 {
		t.Fatal("failures before a success counted")
	}
}

func TestLockoutSweepsIdleKeys(t *testing.T) {
	l := newLockout()
	for i := range sweepEvery - 1 {
		l.Fail(fmt.Sprint(i), t0)
	}
	l.Fail("late", t0.Add(time.Hour))
	if len(l.keys) != 1 {
		t.Fatalf("%d keys after a sweep, want 1", len(l.keys))
	}
}

func TestWindowCapsRequestsPerPeriod(t *testing.T) {
	w := &Window{Max: 2, Period: time.Minute}
	for i := range 2 {
		if _, ok := w.Allow("ip", t0.Add(time.Duration(i)*time.Second)); !ok {
			t.Fatalf("request %d refused", i+1)
		}
	}
	wait, ok := w.Allow("ip", t0.Add(20*time.Second))
	if ok || wait != 40*time.Second {
		t.Fatalf("third request: %v, %v; want 40s, false", wait, ok)
	}
	if _, ok := w.Allow("other", t0.Add(20*time.Second)); !ok {
		t.Fatal("another key was refused")
	}
	if _, ok := w.Allow("ip", t0.Add(time.Minute)); !ok {
		t.Fatal("refused in the next window")
	}
}
