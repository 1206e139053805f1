package metrics

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"
)

func TestAProbeAsksItsPeerAtMostOncePerPeriod(t *testing.T) {
	calls := 0
	fail := errors.New("down")
	var answer error
	r := Probe(50*time.Millisecond, func(context.Context) error { calls++; return answer })
	ctx := context.Background()
	if err := r(ctx); err != nil || calls != 1 {
		t.Fatalf("first: %v after %d calls, want nil after 1", err, calls)
	}
	answer = fail
	if err := r(ctx); err != nil || calls != 1 {
		t.Fatalf("within the period: %v after %d calls, want the last answer (nil) without asking", err, calls)
	}
	time.Sleep(60 * time.Millisecond)
	if err := r(ctx); !errors.Is(err, fail) || calls != 2 {
		t.Fatalf("after the period: %v after %d calls, want the new answer", err, calls)
	}
}

func TestReachableOpensAConnectionOrSaysWhichAddressIsNot(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	if err := Reachable(addr, time.Second)(context.Background()); err != nil {
		t.Errorf("listening %s: %v", addr, err)
	}
	ln.Close()
	err = Reachable(addr, time.Second)(context.Background())
	if err == nil || !strings.Contains(err.Error(), addr) {
		t.Errorf("closed %s: %v, want an error naming it", addr, err)
	}
}
