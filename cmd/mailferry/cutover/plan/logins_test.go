package plan

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/mailferry/mailferry/shared/config"
	"github.com/mailferry/mailferry/shared/imapdial"
	"github.com/mailferry/mailferry/shared/job"
)

// refusing is a login limit that allows no login, counting what it was
// asked.
type refusing struct{ asked int }

func (r *refusing) Allow(context.Context, string) error {
	r.asked++
	return fmt.Errorf("too many refused logins: %w", imapdial.ErrLoginRefused)
}
func (r *refusing) Refused(context.Context, string, string) error { return nil }

// A plan reads the source with the extractors' login limit: a mailbox
// whose logins were refused this hour is not tried again (nothing dials
// the source), and the plan names it with the reason.
func TestAPlanDoesNotLogInWhereTheLimitSaysNo(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	dialed := make(chan struct{}, 1)
	go func() {
		if c, err := ln.Accept(); err == nil {
			dialed <- struct{}{}
			c.Close()
		}
	}()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "pw"), []byte("pw\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse([]byte(fmt.Sprintf("source: {address: %s, tls: none, auth: user}\n", ln.Addr())), dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	guard := &refusing{}
	p, err := Make(context.Background(), Options{Config: cfg, Concurrency: 1, Logins: guard, Log: zerolog.Nop(),
		Mailboxes: []job.Mailbox{{SourceUser: "ann@old.test", TargetUser: "ann@new.test", SourcePasswordFile: filepath.Join(dir, "pw")}}})
	if err != nil {
		t.Fatal(err)
	}
	if guard.asked != 1 {
		t.Errorf("the limit was asked %d times, want once", guard.asked)
	}
	select {
	case <-dialed:
		t.Error("the source was dialled")
	default:
	}
	got := p.Domains[0].Mailboxes[0]
	if !strings.Contains(got.Error, "too many refused logins") {
		t.Errorf("mailbox %+v: want the limit's reason", got)
	}
}
