package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/mailferry/mailferry/cmd/mailferry/demo"
	"github.com/mailferry/mailferry/cmd/mailferry/status"
	"github.com/mailferry/mailferry/cmd/mailferry/verify"
)

func TestDemoMigratesAndVerifies(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var out, errOut bytes.Buffer
	if err := run(ctx, "demo", nil, &out, &errOut); err != nil {
		t.Fatalf("demo: %v\n%s\n%s", err, out.String(), errOut.String())
	}
	if !strings.Contains(out.String(), "verified 3 mailboxes: 3 ok, 0 different") {
		t.Errorf("demo output:\n%s", out.String())
	}
}

func TestVerifyExitsNonZeroAndNamesTheMessageWhenTargetLacksOne(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir := t.TempDir()
	env, err := demo.Start(ctx, dir, 1, 3)
	if err != nil {
		t.Fatal(err)
	}
	defer env.Close()
	var out, errOut bytes.Buffer
	if err := run(ctx, "migrate", []string{"-c", env.ConfigPath}, &out, &errOut); err != nil {
		t.Fatalf("migrate: %v\n%s", err, errOut.String())
	}
	deleteFirst(t, env, "Archive/2010")

	out.Reset()
	err = run(ctx, "verify", []string{"-c", env.ConfigPath, "-json"}, &out, &errOut)
	if !errors.Is(err, errDifferent) {
		t.Fatalf("verify after a deletion: err = %v, want differences", err)
	}
	var r verify.Report
	if err := json.Unmarshal(out.Bytes(), &r); err != nil {
		t.Fatalf("verify -json: %v\n%s", err, out.String())
	}
	var missing []verify.Diff
	for _, f := range r.Mailboxes[0].Folders {
		for _, d := range f.Differences {
			missing = append(missing, d)
		}
	}
	if r.OK || len(missing) != 1 || missing[0].Kind != "missing" || missing[0].Folder != "Archive/2010" || missing[0].UID != 1 {
		t.Errorf("report names %+v, want the one missing message Archive/2010 uid 1", missing)
	}
}

func TestBadConfigGivesAClearError(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(path, []byte("source:\n  address: mail.example:993\n  tls: sometimes\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	err := run(context.Background(), "migrate", []string{"-c", path}, &out, &errOut)
	if err == nil || !strings.Contains(err.Error(), `tls "sometimes"`) || !strings.Contains(err.Error(), path) {
		t.Errorf("err = %v, want the file and the bad value named", err)
	}
}

// targetAsUser1 is a client logged in to the demo's target as user1,
// closed with the test.
func targetAsUser1(t *testing.T, env *demo.Env) *imapclient.Client {
	t.Helper()
	cfg, err := env.Config()
	if err != nil {
		t.Fatal(err)
	}
	pw, err := os.ReadFile(filepath.Join(env.Dir, "user1.pw"))
	if err != nil {
		t.Fatal(err)
	}
	c, err := imapclient.DialInsecure(cfg.Target.Address, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.Login("user1@example.test", strings.TrimSpace(string(pw))).Wait(); err != nil {
		t.Fatal(err)
	}
	return c
}

// deleteFirst removes the first message of a target folder.
func deleteFirst(t *testing.T, env *demo.Env, folder string) {
	t.Helper()
	c := targetAsUser1(t, env)
	if _, err := c.Select(folder, nil).Wait(); err != nil {
		t.Fatal(err)
	}
	if err := c.Store(imap.SeqSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagDeleted}, Silent: true}, nil).Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Expunge().Close(); err != nil {
		t.Fatal(err)
	}
}

func TestStatusAfterMigrateShowsEveryMailboxDoneWithItsCounts(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	env := startDemo(ctx, t, 2, 5)
	var out, errOut bytes.Buffer
	if err := run(ctx, "status", []string{"-c", env.ConfigPath}, &out, &errOut); err != nil {
		t.Fatalf("status before anything: %v", err)
	}
	if !strings.Contains(out.String(), "not queued 2") {
		t.Errorf("status before migrating:\n%s", out.String())
	}
	if err := run(ctx, "migrate", []string{"-c", env.ConfigPath}, &out, &errOut); err != nil {
		t.Fatalf("migrate: %v\n%s", err, errOut.String())
	}
	out.Reset()
	if err := run(ctx, "status", []string{"-c", env.ConfigPath, "-json"}, &out, &errOut); err != nil {
		t.Fatalf("status: %v", err)
	}
	var st status.Status
	if err := json.Unmarshal(out.Bytes(), &st); err != nil {
		t.Fatalf("status -json: %v\n%s", err, out.String())
	}
	if st.Phases[status.PhaseDone] != 2 {
		t.Errorf("phases = %v, want 2 done", st.Phases)
	}
	if st.Totals.Appended != int64(env.Messages) || st.Totals.Total != int64(env.Messages) || st.Totals.Extracted != int64(env.Messages) {
		t.Errorf("totals = %+v, want %d messages extracted and appended", st.Totals, env.Messages)
	}
}

// startDemo starts a demo environment of n mailboxes (mail from seed),
// nothing migrated; it closes with the test.
func startDemo(ctx context.Context, t *testing.T, n int, seed uint64) *demo.Env {
	t.Helper()
	env, err := demo.Start(ctx, t.TempDir(), n, seed)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(env.Close)
	return env
}

// migratedDemo starts a demo environment of n mailboxes (mail from seed)
// and runs `mailferry migrate` over it; the environment closes with the
// test.
func migratedDemo(ctx context.Context, t *testing.T, n int, seed uint64) *demo.Env {
	t.Helper()
	env := startDemo(ctx, t, n, seed)
	var out, errOut bytes.Buffer
	if err := run(ctx, "migrate", []string{"-c", env.ConfigPath}, &out, &errOut); err != nil {
		t.Fatalf("migrate: %v\n%s", err, errOut.String())
	}
	return env
}
