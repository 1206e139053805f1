package auth

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailferry/mailferry/shared/testenv/clocktest"

	"github.com/mailferry/mailferry/services/auth/internal/authtest"
	"github.com/mailferry/mailferry/services/auth/internal/keylock"
	"github.com/mailferry/mailferry/services/auth/legacyimap"
	"github.com/mailferry/mailferry/services/auth/signin"
	"github.com/mailferry/mailferry/shared/config"
	"github.com/mailferry/mailferry/shared/loginlimit"
	"github.com/mailferry/mailferry/shared/sourcecred"
	"github.com/mailferry/mailferry/shared/testenv/dovecottest"
)

// legacyFailures counts the failed logins of login in Dovecot's log.
func legacyFailures(t *testing.T, srv *dovecottest.Server, login string) int {
	t.Helper()
	log, err := os.ReadFile(srv.LogPath)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, line := range strings.Split(string(log), "\n") {
		if strings.Contains(line, "imap-login") && strings.Contains(line, login) &&
			(strings.Contains(line, "auth failed") || strings.Contains(line, "Password mismatch")) {
			n++
		}
	}
	return n
}

// Fifty sign-ins and changes at once with a wrong (current) password of
// a mailbox the legacy server checks make one failed login there (its source login,
// bob@company): one answer says the password is wrong, the others that
// the old server is not asked again until the hour of that refusal ends.
// The extractor's guard then sees the mailbox's count.
func TestFiftyWrongLegacyPasswordsAtOnceMakeOneFailedLoginAtTheLegacyServer(t *testing.T) {
	const (
		email, login = "bob@example.com", "bob@company"
		right        = "Bob-Legacy-Pw-1"
	)
	srv := dovecottest.StartT(t, dovecottest.Options{Users: map[string]string{login: right}})
	dir := t.TempDir()
	boxes := filepath.Join(dir, "mailboxes.csv")
	if err := os.WriteFile(boxes, []byte("source_user,target_user,source_password_file\n"+login+","+email+",\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	key := filepath.Join(dir, "source-credential.key")
	if err := os.WriteFile(key, []byte(sourcecred.NewKeyText()), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := authtest.Config(t, fmt.Sprintf("mailboxes: {file: %s}\n", boxes)+
		fmt.Sprintf("auth: {listen: 127.0.0.1:0, provider: dovecot, dovecot: {passwd_file: %s}, argon2: {time: 1, memory_kib: 1024},\n", filepath.Join(dir, "passwd"))+
		fmt.Sprintf("  legacy_imap: {address: %s, tls: none}, source_credentials: {key_file: %s},\n", srv.Addr, key)+
		"  rate_limit: {account_failures: 1000, address_failures: 1000, address_requests: 1000}}\n")
	if got := authtest.Auth(t, cfg).LegacyIMAP.MaxLoginFailures; got != 1 {
		t.Fatalf("legacy_imap.max_login_failures = %d, want the default 1", got)
	}
	b := authtest.Broker(t, cfg)
	logs := authtest.NewLogSink(t)
	ctx := authtest.Context(t, 3*time.Minute)
	if _, err := Import(ctx, cfg, b, strings.NewReader("email,role,legacy_hash\n"+email+",email-only,\n")); err != nil {
		t.Fatal(err)
	}
	base := serveAuth(t, ctx, cfg, b, logs)

	type answer struct {
		status     int
		retryAfter string
		msg        string
	}
	answers := make(chan answer, 50)
	var wg sync.WaitGroup
	start := time.Now()
	for i := range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Half sign in, half change their password.
			path, req := "/api/v1/login", map[string]string{"email": email, "password": fmt.Sprintf("wrong-%d", i)}
			if i%2 == 1 {
				path, req = "/api/v1/password", map[string]string{"email": email, "current_password": fmt.Sprintf("wrong-%d", i), "new_password": "New-Passw0rd-2027!"}
			}
			body, _ := json.Marshal(req)
			res, err := http.Post(base+path, "application/json", strings.NewReader(string(body)))
			if err != nil {
				t.Error(err)
				return
			}
			defer res.Body.Close()
			var out struct {
				Error string `json:"error"`
			}
			_ = json.NewDecoder(res.Body).Decode(&out)
			answers <- answer{res.StatusCode, res.Header.Get("Retry-After"), out.Error}
		}()
	}
	wg.Wait()
	close(answers)
	counted, limited := 0, 0
	for a := range answers {
		switch a.status {
		case http.StatusUnauthorized:
			counted++
		case http.StatusTooManyRequests:
			limited++
			secs, err := strconv.Atoi(a.retryAfter)
			// Until the hour of the refusal ends: it was made after the
			// first request, a few seconds ago at most.
			if err != nil || secs > int(loginlimit.Window.Seconds()) || secs < int((loginlimit.Window-time.Since(start)).Seconds())-1 {
				t.Errorf("429 with Retry-After %q, want the rest of the hour after the refusal", a.retryAfter)
			}
			if !strings.Contains(a.msg, "old mail server refused this password") {
				t.Errorf("429 says %q, want it to say the old server refused the password", a.msg)
			}
		case http.StatusServiceUnavailable:
			// Password hashing busy: refused before any check.
		default:
			t.Errorf("answer %d %q, want 401, 429 or 503 (busy)", a.status, a.msg)
		}
	}
	t.Logf("%d answers 401, %d 429, the others 503 (hashing busy)", counted, limited)
	if counted != 1 || limited == 0 {
		t.Errorf("%d answers 401 and %d 429, want one 401 and the others 429", counted, limited)
	}
	if n := legacyFailures(t, srv, login); n != 1 {
		t.Errorf("the legacy server refused %s %d times, want once:\n%s", login, n, srv.LogTail(30))
	}
	if n := legacyFailures(t, srv, email); n != 0 {
		t.Errorf("the legacy server was asked %d times with the address %s, want the source login only", n, email)
	}
	// The extractor's guard (the same bucket, side and login) tries no
	// login of the mailbox now.
	if err := loginlimit.New(b.LoginFailures, "source", cfg.Source.MaxLoginFailures, nil).Allow(ctx, login); !errors.Is(err, loginlimit.ErrTooMany) {
		t.Errorf("the extractor's guard of %s: %v, want too many refused logins", login, err)
	}
	authtest.AssertAbsent(t, "logs", logs.String(), right)
}

// A refusal counted by the migration keeps the sign-ins from asking; a
// refusal at a sign-in keeps the migration from logging in; the right
// password is asked again once the hour of the refusal ended.
func TestLegacyLoginsShareTheMigrationsCountAndAreAskedAgainAfterTheHour(t *testing.T) {
	const login, right = "carol@company", "Carol-Legacy-Pw-1"
	srv := dovecottest.StartT(t, dovecottest.Options{Users: map[string]string{login: right}})
	cfg := authtest.Config(t, "")
	b := authtest.Broker(t, cfg)
	ctx := authtest.Context(t, time.Minute)
	c := clocktest.New(time.Now())
	v := &limitedLogins{
		LegacyVerifier: legacyimap.New(config.IMAP{Address: srv.Addr, TLS: config.TLSNone, Auth: config.AuthUser, Connections: 4,
			CommandTimeout: config.Duration(10 * time.Second), DialTimeout: config.Duration(5 * time.Second)}),
		guard: loginlimit.New(b.LoginFailures, "source", 1, c.Now),
		locks: &keylock.Locks{},
		log:   authtest.NewLogSink(t).Logger(),
		now:   c.Now,
	}
	extractor := loginlimit.New(b.LoginFailures, "source", 1, c.Now)

	if ok, err := v.Verify(ctx, login, "wrong", "192.0.2.1"); ok || err != nil {
		t.Fatalf("a wrong password: %v %v, want refused", ok, err)
	}
	if err := extractor.Allow(ctx, login); !errors.Is(err, loginlimit.ErrTooMany) {
		t.Fatalf("the extractor after the sign-in's refusal: %v, want too many", err)
	}
	c.Add(10 * time.Minute)
	var le *signin.LimitedError
	if _, err := v.Verify(ctx, login, right, "192.0.2.1"); !errors.As(err, &le) || le.RetryAfter != 50*time.Minute {
		t.Fatalf("the right password 10 minutes later: %v, want limited for 50 minutes", err)
	}
	c.Add(50 * time.Minute)
	if ok, err := v.Verify(ctx, login, right, "192.0.2.1"); !ok || err != nil {
		t.Fatalf("the right password after the hour: %v %v, want accepted", ok, err)
	}
	// A right password resets nothing; a refusal the extractor counts
	// stops the sign-ins.
	if err := extractor.Refused(ctx, login, "a1 NO [AUTHENTICATIONFAILED] Authentication failed."); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(ctx, login, right, "192.0.2.1"); !errors.As(err, &le) {
		t.Fatalf("after the extractor's refusal: %v, want limited", err)
	}
	if n := legacyFailures(t, srv, login); n != 1 {
		t.Errorf("the legacy server refused %s %d times, want once:\n%s", login, n, srv.LogTail(30))
	}
}
