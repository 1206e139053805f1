package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

func TestUnknownCommandIsAUsageError(t *testing.T) {
	var out, errOut bytes.Buffer
	err := run(context.Background(), []string{"migrate"}, &out, &errOut)
	if err == nil || !strings.Contains(errOut.String(), "usage: mailferry-lab") {
		t.Fatalf("err = %v, stderr:\n%s", err, errOut.String())
	}
}
