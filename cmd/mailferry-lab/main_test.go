package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"
)

func TestDemoMigratesAndVerifies(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var out, errOut bytes.Buffer
	if err := run(ctx, []string{"demo"}, &out, &errOut); err != nil {
		t.Fatalf("demo: %v\n%s\n%s", err, out.String(), errOut.String())
	}
	if !strings.Contains(out.String(), "verified 3 mailboxes: 3 ok, 0 different") {
		t.Errorf("demo output:\n%s", out.String())
	}
}

func TestUnknownCommandIsAUsageError(t *testing.T) {
	var out, errOut bytes.Buffer
	err := run(context.Background(), []string{"migrate"}, &out, &errOut)
	if err == nil || !strings.Contains(errOut.String(), "usage: mailferry-lab") {
		t.Fatalf("err = %v, stderr:\n%s", err, errOut.String())
	}
}
