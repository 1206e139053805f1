package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/mailferry/mailferry/cmd/mailferry/cutover"
	"github.com/mailferry/mailferry/shared/campaign"
)

// A campaign without a dns section copies and verifies every domain and
// closes it without a switch, saying why in its DNS line.
func TestCutoverStartWithoutDNSCopiesVerifiesAndClosesEveryDomain(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	env := startDemo(ctx, t, 2, 7)
	var out, errOut bytes.Buffer
	if err := run(ctx, "cutover", []string{"start", "-c", env.ConfigPath, "-all"}, &out, &errOut); err != nil {
		t.Fatalf("cutover start: %v\n%s\n%s", err, out.String(), errOut.String())
	}
	if !strings.Contains(out.String(), "example.test: done") {
		t.Errorf("start said:\n%s", out.String())
	}
	out.Reset()
	if err := run(ctx, "cutover", []string{"status", "-c", env.ConfigPath, "-json"}, &out, &errOut); err != nil {
		t.Fatalf("cutover status: %v\n%s", err, errOut.String())
	}
	var st cutover.Status
	if err := json.Unmarshal(out.Bytes(), &st); err != nil {
		t.Fatalf("status -json: %v\n%s", err, out.String())
	}
	if len(st.Domains) != 1 || st.Domains[0].Phase != campaign.Done || !strings.Contains(st.Domains[0].DNS, "no dns section") {
		t.Fatalf("status = %+v", st)
	}
	var msgs int64
	for _, m := range st.Domains[0].Mailboxes {
		msgs += m.Messages
		if m.Phase != campaign.BoxVerified || m.Differences == nil || *m.Differences != 0 {
			t.Errorf("mailbox %+v, want verified without differences", m)
		}
	}
	if msgs != int64(env.Messages) {
		t.Errorf("messages moved = %d, want %d", msgs, env.Messages)
	}
}
