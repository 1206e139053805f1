package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/mailferry/mailferry/cmd/mailferry/demo"
	"github.com/mailferry/mailferry/cmd/mailferry/status"
)

// statusJSON runs `status -json` and decodes it.
func statusJSON(t *testing.T, ctx context.Context, env *demo.Env) status.Status {
	t.Helper()
	var out, errOut bytes.Buffer
	if err := run(ctx, "status", []string{"-c", env.ConfigPath, "-json"}, &out, &errOut); err != nil {
		t.Fatalf("status: %v\n%s", err, errOut.String())
	}
	var st status.Status
	if err := json.Unmarshal(out.Bytes(), &st); err != nil {
		t.Fatalf("status -json: %v\n%s", err, out.String())
	}
	return st
}

func TestStatusAfterAReplayOfAMigratedMailboxStaysDoneWithTheMailboxsCounts(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	env := migratedDemo(ctx, t, 2, 7)
	var out, errOut bytes.Buffer
	before := statusJSON(t, ctx, env)
	mbx := before.Mailboxes[0].Mailbox
	if err := run(ctx, "replay", []string{"-c", env.ConfigPath, "-mailbox", mbx, "-from-seq", "1", "-wait"}, &out, &errOut); err != nil {
		t.Fatalf("replay: %v\n%s", err, errOut.String())
	}
	st := statusJSON(t, ctx, env)
	if st.Phases[status.PhaseDone] != 2 {
		t.Errorf("phases after the replay = %v, want 2 done", st.Phases)
	}
	m := st.Mailboxes[0]
	if m.PassKind != "replay" || m.Loaded != before.Mailboxes[0].Loaded || m.Total != before.Mailboxes[0].Total || m.LoadedBytes == 0 {
		t.Errorf("after the replay %+v, want the replay pass and the counts of before %+v", m, before.Mailboxes[0])
	}
	if st.Totals.Loaded != int64(env.Messages) || st.Totals.Extracted != int64(env.Messages) {
		t.Errorf("totals after the replay %+v, want %d messages", st.Totals, env.Messages)
	}
	out.Reset()
	if err := run(ctx, "status", []string{"-c", env.ConfigPath}, &out, &errOut); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out.String(), "loading") || strings.Contains(out.String(), " 0/") {
		t.Errorf("the table after the replay:\n%s", out.String())
	}
}

func TestStatusShowsAMailboxWhoseVerificationFoundDifferencesAsFailed(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	env := migratedDemo(ctx, t, 1, 3)
	var out, errOut bytes.Buffer
	deleteFirst(t, env, "Archive/2010")
	if err := run(ctx, "verify", []string{"-c", env.ConfigPath}, &out, &errOut); !errors.Is(err, errDifferent) {
		t.Fatalf("verify after a deletion: err = %v, want differences", err)
	}
	st := statusJSON(t, ctx, env)
	if m := st.Mailboxes[0]; m.Phase != status.PhaseFailed || m.Detail != "verification: 1 difference" || m.Differences != 1 {
		t.Errorf("after a failed verification: phase %q detail %q differences %d", m.Phase, m.Detail, m.Differences)
	}
	out.Reset()
	if err := run(ctx, "status", []string{"-c", env.ConfigPath}, &out, &errOut); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "failed: verification: 1 difference") {
		t.Errorf("the table does not say why:\n%s", out.String())
	}
}
