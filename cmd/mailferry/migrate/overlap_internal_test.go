package migrate

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/mailferry/mailferry/cmd/mailferry/verify"
	"github.com/mailferry/mailferry/shared/config"
	"github.com/mailferry/mailferry/shared/job"
	"github.com/mailferry/mailferry/shared/testenv/configtest"
)

func TestVerificationDuringTheCopyUsesOnlyTheConnectionsTheServicesLeave(t *testing.T) {
	for _, tc := range []struct {
		name                  string
		yaml                  string
		wantDuring, wantAfter int
	}{
		{"defaults leave no target connection", "", 0, 4},
		{"room on both servers", "source: {connections: 12}\ntarget: {connections: 12}\nextractor: {concurrency: 4}\nloader: {concurrency: 4}\n", 4, 6},
		{"the target is the bound", "source: {connections: 20}\ntarget: {connections: 10}\nextractor: {concurrency: 4}\nloader: {concurrency: 4}\n", 2, 5},
		{"the source is the bound", "source: {connections: 5}\ntarget: {connections: 20}\nextractor: {concurrency: 4}\nloader: {concurrency: 2}\n", 1, 2},
		{"never more than after the copy", "source: {connections: 40}\ntarget: {connections: 40}\nextractor: {concurrency: 1}\nloader: {concurrency: 1}\n", 20, 20},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := configtest.Parse(t, tc.yaml)
			during, after := verifySlots(cfg)
			if during != tc.wantDuring || after != tc.wantAfter {
				t.Errorf("verifySlots = %d during, %d after; want %d, %d", during, after, tc.wantDuring, tc.wantAfter)
			}
		})
	}
}

// gauge is a verify.Mailbox stand-in that records how many run at once and
// which mailboxes it verified, and holds each until released.
type gauge struct {
	mu       sync.Mutex
	running  int
	peak     int
	verified []string
	release  chan struct{}
}

func (g *gauge) check(ctx context.Context, _ *config.Config, mb job.Mailbox, _ ...verify.Option) verify.MailboxReport {
	g.mu.Lock()
	g.running++
	g.peak = max(g.peak, g.running)
	g.mu.Unlock()
	defer func() {
		g.mu.Lock()
		g.running--
		g.verified = append(g.verified, mb.SourceUser)
		g.mu.Unlock()
	}()
	select {
	case <-g.release:
	case <-ctx.Done():
		return verify.MailboxReport{Source: mb.SourceUser, Error: ctx.Err().Error()}
	}
	return verify.MailboxReport{Source: mb.SourceUser, Target: mb.TargetUser, OK: true}
}

func (g *gauge) state() (running, peak int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.running, g.peak
}

func waitRunning(t *testing.T, g *gauge, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if running, _ := g.state(); running == n {
			return
		}
		if time.Now().After(deadline) {
			running, _ := g.state()
			t.Fatalf("%d verifications running, want %d", running, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func boxesNamed(n int) []job.Mailbox {
	var boxes []job.Mailbox
	for i := range n {
		u := fmt.Sprintf("user%d@example.com", i)
		boxes = append(boxes, job.Mailbox{SourceUser: u, TargetUser: u})
	}
	return boxes
}

func TestMailboxesLoadedDuringTheCopyAreVerifiedThenWithinTheSpareConnectionsAndAllAfterIt(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	g := &gauge{release: make(chan struct{})}
	boxes := boxesNamed(6)
	v := newVerifier(ctx, &config.Config{}, nil, 1, 3, 2*len(boxes), g.check)
	defer v.stop()
	for _, mb := range boxes[:4] {
		v.add(mb, "p1")
	}
	waitRunning(t, g, 1)
	time.Sleep(50 * time.Millisecond) // room for a second one to start wrongly
	if _, peak := g.state(); peak != 1 {
		t.Fatalf("%d verifications at once during the copy, want 1", peak)
	}
	v.copyDone()
	waitRunning(t, g, 3)
	close(g.release)
	passes := map[string]string{}
	for _, mb := range boxes {
		passes[mb.SourceUser] = "p1"
	}
	rep := v.report(boxes, passes)
	if !rep.OK || len(rep.Mailboxes) != len(boxes) {
		t.Fatalf("report OK=%v with %d mailboxes, want OK with %d", rep.OK, len(rep.Mailboxes), len(boxes))
	}
	for i, mr := range rep.Mailboxes {
		if mr.Source != boxes[i].SourceUser {
			t.Errorf("report %d is %s, want %s (inventory order)", i, mr.Source, boxes[i].SourceUser)
		}
	}
	if _, peak := g.state(); peak != 3 {
		t.Errorf("peak %d verifications at once after the copy, want 3", peak)
	}
	if len(g.verified) != len(boxes) {
		t.Errorf("verified %v, want each of the %d mailboxes once", g.verified, len(boxes))
	}
}

func TestAMailboxLoadedAgainByANewerPassIsVerifiedAgain(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	g := &gauge{release: make(chan struct{})}
	close(g.release)
	boxes := boxesNamed(1)
	v := newVerifier(ctx, &config.Config{}, nil, 1, 1, 2, g.check)
	defer v.stop()
	v.add(boxes[0], "p1")
	v.add(boxes[0], "p1") // the same loaded event seen twice
	rep := v.report(boxes, map[string]string{boxes[0].SourceUser: "p2"})
	if !rep.OK {
		t.Fatalf("report not OK: %+v", rep)
	}
	if len(g.verified) != 2 {
		t.Errorf("verified %v, want the mailbox once per pass", g.verified)
	}
}

func TestACancelledRunReportsItsUnverifiedMailboxesAsErrors(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	g := &gauge{release: make(chan struct{})}
	boxes := boxesNamed(3)
	v := newVerifier(ctx, &config.Config{}, nil, 0, 1, 6, g.check)
	defer v.stop()
	v.add(boxes[0], "p1")
	cancel()
	passes := map[string]string{}
	for _, mb := range boxes {
		passes[mb.SourceUser] = "p1"
	}
	rep := v.report(boxes, passes)
	if rep.OK {
		t.Fatal("a cancelled verification reported OK")
	}
	for _, mr := range rep.Mailboxes {
		if mr.OK || mr.Error == "" {
			t.Errorf("%s: OK=%v error %q, want an error", mr.Source, mr.OK, mr.Error)
		}
	}
	if !errors.Is(ctx.Err(), context.Canceled) {
		t.Fatal(ctx.Err())
	}
}
