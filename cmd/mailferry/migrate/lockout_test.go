package migrate_test

import (
	"context"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mailferry/mailferry/cmd/mailferry/migrate"
	"github.com/mailferry/mailferry/shared/config"
	"github.com/mailferry/mailferry/shared/testenv/dovecottest"
	"github.com/mailferry/mailferry/shared/testenv/e2etest"
	"github.com/mailferry/mailferry/shared/testenv/faultproxy"
)

// TestAWrongSourcePasswordIsTriedOnceAnHourWhateverRunsAgain migrates
// with each user's own source password (no master login, as from
// MailEnable's AUTH.TAB), one of them wrong, then runs the migration
// three times more: the legacy server sees that user's password refused
// once (a server that locks accounts after N failures never gets there),
// the mailbox fails by name each time, and the others are copied. It does
// so from a plain Dovecot, and from a Dovecot configured like MailEnable
// 10.x (its capabilities, LOGIN and CRAM-MD5) behind a proxy that strips
// the response codes from its NO replies, as older MailEnable refuses a
// login: a bare NO, no [AUTHENTICATIONFAILED].
func TestAWrongSourcePasswordIsTriedOnceAnHourWhateverRunsAgain(t *testing.T) {
	tests := []struct {
		name      string
		source    dovecottest.Options
		stripCode bool
	}{
		{"dovecot", dovecottest.Options{}, false},
		{"mailenable-like refusing with a bare NO", dovecottest.Options{
			ExtraConfig: "imap_capability = " + mailEnable10 + "\nauth_mechanisms = plain login cram-md5\n",
		}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wrongPasswordTriedOnce(t, tt.source, tt.stripCode)
		})
	}
}

func wrongPasswordTriedOnce(t *testing.T, source dovecottest.Options, stripCode bool) {
	t.Helper()
	p := e2etest.StartWithSource(t, 2, source, dovecottest.Options{})
	rng := rand.New(rand.NewPCG(9, 9))
	// A body with lines that look like tagged refusals (go-imap tags its
	// commands T1, T2, …): the proxy passes literals untouched, so it
	// arrives byte-exact.
	lookalike := dovecottest.Message{Body: []byte("From: a@example.com\r\nSubject: quoting a server\r\n\r\n" +
		"T1 NO [AUTHENTICATIONFAILED] Authentication failed.\r\nT7 NO [X] y\r\nA1 NO [UNAVAILABLE] z\r\n")}
	for _, u := range p.Users {
		if err := p.Src.Seed(u, "INBOX", append(e2etest.Generated(rng, 4, u), lookalike)); err != nil {
			t.Fatal(err)
		}
	}
	good, bad := p.Users[0], p.Users[1]
	_, cfg := p.ConfigOwnPasswords(t, filepath.Join(p.Dir, "nats"), map[string]string{bad: "not-pw-1"})
	if cfg.Source.Auth != config.AuthUser || cfg.Source.MaxLoginFailures != 1 {
		t.Fatalf("source auth %q, max_login_failures %d", cfg.Source.Auth, cfg.Source.MaxLoginFailures)
	}
	var proxy *faultproxy.Proxy
	if stripCode {
		var err error
		if proxy, err = faultproxy.Start(context.Background(), p.Src.Addr, faultproxy.Faults{StripNoCodes: true}, 1); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { proxy.Close() })
		cfg.Source.Address = proxy.Addr()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	for run := range 4 {
		res, err := migrate.Run(ctx, cfg, e2etest.Logger(t), migrate.Options{})
		if err != nil {
			t.Fatalf("run %d: %v", run+1, err)
		}
		var b strings.Builder
		res.WriteText(&b)
		if res.OK() {
			t.Fatalf("run %d: every mailbox verified, want %s failed:\n%s", run+1, bad, b.String())
		}
		want := "login refused"
		if run > 0 {
			want = "not trying again before"
		}
		if !strings.Contains(b.String(), bad) || !strings.Contains(b.String(), want) {
			t.Errorf("run %d: want %s failed saying %q:\n%s", run+1, bad, want, b.String())
		}
		if !strings.Contains(b.String(), "ok        "+good) {
			t.Errorf("run %d: want %s verified:\n%s", run+1, good, b.String())
		}
	}
	log, err := os.ReadFile(p.Src.LogPath)
	if err != nil {
		t.Fatal(err)
	}
	failed := 0
	for _, line := range strings.Split(string(log), "\n") {
		if strings.Contains(line, bad) && (strings.Contains(line, "auth failed") || strings.Contains(line, "Password mismatch") || strings.Contains(line, "unknown user")) && strings.Contains(line, "imap-login") {
			failed++
		}
	}
	if failed != 1 {
		t.Errorf("the source refused %s's password %d times, want once:\n%s", bad, failed, p.Src.LogTail(40))
	}
	if proxy != nil {
		// The refusal reached the client as a bare NO.
		if s := proxy.Stats(); s.Stripped != 1 {
			t.Errorf("the proxy stripped the code of %d NO replies, want the one refusal: %+v", s.Stripped, s)
		}
	}
}
