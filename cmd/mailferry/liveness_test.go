package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/mailferry/mailferry/services/loader"
	"github.com/mailferry/mailferry/shared/broker"
	"github.com/mailferry/mailferry/shared/config"
	"github.com/mailferry/mailferry/shared/testenv/dovecottest"
	"github.com/mailferry/mailferry/shared/testenv/e2etest"
	"github.com/mailferry/mailferry/shared/testenv/syncbuf"
)

// shutdownBound is the documented grace period of a running job plus room
// to close the broker and the servers' connections.
const shutdownBound = 15 * time.Second

func TestMigrateWithARefusedSourceLoginExitsPromptlyNamingTheMailbox(t *testing.T) {
	p := e2etest.Start(t, 2, dovecottest.Options{})
	rng := rand.New(rand.NewPCG(8, 1))
	for _, u := range p.Users {
		if err := p.Src.Seed(u, "INBOX", e2etest.Generated(rng, 20, u)); err != nil {
			t.Fatal(err)
		}
	}
	conf, _ := p.Config(t, filepath.Join(p.Dir, "nats"))
	// A mailbox the legacy server does not know: its login is refused.
	inv := filepath.Join(p.Dir, "mailboxes.csv")
	f, err := os.OpenFile(inv, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString("ghost@old.example," + p.Users[0] + "\n"); err != nil {
		t.Fatal(err)
	}
	f.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	start := time.Now()
	var out bytes.Buffer
	err = run(ctx, "migrate", []string{"-c", conf}, &out, &syncbuf.Buffer{})
	took := time.Since(start)
	if !errors.Is(err, errDifferent) {
		t.Fatalf("migrate with a refused login: err = %v, want exit status 1\n%s", err, out.String())
	}
	if took > time.Minute {
		t.Errorf("migrate took %v to give up on a refused login", took)
	}
	text := out.String()
	if !strings.Contains(text, "NOT LOADED ghost@old.example: failed") || !strings.Contains(strings.ToLower(text), "login") {
		t.Errorf("the report does not name the refused mailbox and why:\n%s", text)
	}
	for _, u := range p.Users {
		if strings.Contains(text, "NOT LOADED "+u) {
			t.Errorf("%s was not loaded although its login works:\n%s", u, text)
		}
	}
	t.Logf("gave up in %v:\n%s", took, text)
}

// TestMigrateStopsWithinTheGracePeriodInEveryState cancels a migration (as
// SIGTERM does) while it copies, while it waits for a lease another
// session holds, while the legacy server is down, and while it verifies.
func TestMigrateStopsWithinTheGracePeriodInEveryState(t *testing.T) {
	p := e2etest.Start(t, 2, dovecottest.Options{})
	rng := rand.New(rand.NewPCG(8, 2))
	for _, u := range p.Users {
		if err := p.Src.Seed(u, "INBOX", e2etest.Generated(rng, 1500, u)); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("MAILFERRY_LOG_LEVEL", "info")
	tests := []struct {
		name string
		// prepare sets up the state; it returns the log line that says
		// the state was reached.
		prepare func(t *testing.T, conf string, cfg *config.Config) string
	}{
		{"copying", func(t *testing.T, conf string, cfg *config.Config) string {
			return `"mailbox extracted"`
		}},
		{"waiting for a lease", func(t *testing.T, conf string, cfg *config.Config) string {
			// A broker others can reach: the lease may be a live
			// session's, so it is waited for.
			shareBroker(t, conf)
			holdLease(t, cfg, p.Users[0])
			return "waiting for the mailbox lease another session holds"
		}},
		{"legacy server down", func(t *testing.T, conf string, cfg *config.Config) string {
			writeConfig(t, conf, strings.Replace(readFile(t, conf), p.Src.Addr, "127.0.0.1:1", 1))
			return "interrupted, retrying"
		}},
		{"verifying", func(t *testing.T, conf string, cfg *config.Config) string {
			return `"verifying"`
		}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			conf, cfg := p.Config(t, filepath.Join(p.Dir, "nats", tt.name))
			reached := tt.prepare(t, conf, cfg)
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()
			runCtx, interrupt := context.WithCancel(ctx)
			logs := &syncbuf.Buffer{}
			done := make(chan error, 1)
			go func() { done <- run(runCtx, "migrate", []string{"-c", conf}, &bytes.Buffer{}, logs) }()
			deadline := time.After(2 * time.Minute)
			for !strings.Contains(logs.String(), reached) {
				select {
				case err := <-done:
					t.Fatalf("migrate ended (%v) before reaching %q\n%s", err, reached, logs.String())
				case <-deadline:
					t.Fatalf("never reached %q\n%s", reached, logs.String())
				case <-time.After(20 * time.Millisecond):
				}
			}
			time.Sleep(time.Duration(i%2) * 300 * time.Millisecond)
			interrupt()
			stopped := time.Now()
			select {
			case err := <-done:
				if !errors.Is(err, context.Canceled) {
					t.Errorf("interrupted migrate returned %v, want it to report the interruption", err)
				}
				t.Logf("stopped %v after the interruption", time.Since(stopped).Round(time.Millisecond))
			case <-time.After(shutdownBound):
				var dump strings.Builder
				_ = pprof.Lookup("goroutine").WriteTo(&dump, 1)
				t.Fatalf("migrate still running %v after the interruption\n%s\n%s", shutdownBound, tail(logs.String(), 20), dump.String())
			}
		})
	}
}

// shareBroker makes the embedded broker of conf listen on a loopback port.
func shareBroker(t *testing.T, conf string) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	text := readFile(t, conf)
	writeConfig(t, conf, strings.Replace(text, "nats:\n", "nats:\n  listen: "+addr+"\n", 1))
}

func TestMigrateAfterAKilledRunTakesOverItsLeasesAtOnce(t *testing.T) {
	p := e2etest.Start(t, 2, dovecottest.Options{})
	rng := rand.New(rand.NewPCG(8, 3))
	for _, u := range p.Users {
		if err := p.Src.Seed(u, "INBOX", e2etest.Generated(rng, 30, u)); err != nil {
			t.Fatal(err)
		}
	}
	conf, cfg := p.Config(t, filepath.Join(p.Dir, "nats"))
	// What a killed all-in-one run leaves behind: leases valid for long.
	for _, u := range p.Users {
		holdLease(t, cfg, u)
	}
	t.Setenv("MAILFERRY_LOG_LEVEL", "info")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	logs := &syncbuf.Buffer{}
	start := time.Now()
	if err := run(ctx, "migrate", []string{"-c", conf}, &bytes.Buffer{}, logs); err != nil {
		t.Fatalf("migrate: %v\n%s", err, tail(logs.String(), 20))
	}
	if took := time.Since(start); took > 30*time.Second {
		t.Errorf("migrate took %v: it waited for the leases of a process that is gone", took)
	}
	if n := strings.Count(logs.String(), "lease of a process that is gone released"); n != len(p.Users) {
		t.Errorf("%d leases reported released, want %d", n, len(p.Users))
	}
}

// holdLease makes mailbox look loaded by another live session.
func holdLease(t *testing.T, cfg *config.Config, mailbox string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b, err := broker.Open(ctx, cfg.NATS, "test-lease", zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	v, _ := json.Marshal(loader.Lease{Owner: "elsewhere", Pass: "other-pass", Expires: time.Now().Add(time.Hour)})
	if _, err := b.Ledger.Put(ctx, loader.LeaseKey(mailbox), v); err != nil {
		t.Fatal(err)
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func writeConfig(t *testing.T, path, text string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
