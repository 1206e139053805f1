package backoff

import (
	"context"
	"testing"
	"time"
)

func TestDelayGrowsExponentiallyWithinItsCeiling(t *testing.T) {
	p := Policy{Initial: 100 * time.Millisecond, Max: time.Second, Attempts: 10}
	tests := []struct {
		attempt int
		ceil    time.Duration
	}{{0, 100 * time.Millisecond}, {1, 200 * time.Millisecond}, {3, 800 * time.Millisecond}, {4, time.Second}, {9, time.Second}}
	for _, tt := range tests {
		for range 200 {
			d := p.Delay(tt.attempt)
			if d < tt.ceil/10 || d > tt.ceil {
				t.Fatalf("Delay(%d) = %v, want within [%v, %v]", tt.attempt, d, tt.ceil/10, tt.ceil)
			}
		}
	}
}

func TestWaitStopsAfterAttemptsAndOnCancel(t *testing.T) {
	p := Policy{Initial: time.Millisecond, Max: time.Millisecond, Attempts: 2}
	if !p.Wait(context.Background(), 1) {
		t.Error("Wait refused the last allowed retry")
	}
	if p.Wait(context.Background(), 2) {
		t.Error("Wait allowed a retry beyond Attempts")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if (Policy{Initial: time.Hour, Max: time.Hour, Attempts: 5}).Wait(ctx, 0) {
		t.Error("Wait went on after its context ended")
	}
}
