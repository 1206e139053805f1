package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/mailferry/mailferry/services/auth/internal/authtest"
	"github.com/mailferry/mailferry/shared/broker"
	"github.com/mailferry/mailferry/shared/config"
	"github.com/mailferry/mailferry/shared/event"
	"github.com/mailferry/mailferry/shared/testenv/dovecottest"
)

const (
	alice, alicePw = "alice@example.org", "Alice-Legacy-1"
	bob, bobPw     = "bob@example.org", "Bob-Legacy-2"
)

// legacyHash returns user's hash from the legacy Dovecot's passwd-file:
// what the old platform's export holds.
func legacyHash(t *testing.T, s *dovecottest.Server, user string) string {
	t.Helper()
	b, err := os.ReadFile(authtest.PasswdPath(s))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(l, user+":"); ok {
			return strings.SplitN(rest, ":", 2)[0]
		}
	}
	t.Fatalf("%s not in the legacy passwd-file", user)
	return ""
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func run(t *testing.T, ctx context.Context, stderr io.Writer, cmd string, args ...string) string {
	t.Helper()
	var out bytes.Buffer
	if err := Main(ctx, cmd, args, &out, stderr); err != nil {
		t.Fatalf("mailferry %s %s: %v\n%s", cmd, strings.Join(args, " "), err, out.String())
	}
	return out.String()
}

// TestOperatorFlowAgainstRealDovecot is the end-to-end run: import,
// provision, sign-in notice, change on the page, IMAP login at the new
// provider; one user proves the password through the legacy IMAP server.
func TestOperatorFlowAgainstRealDovecot(t *testing.T) {
	legacy := authtest.Dovecot(t, map[string]string{alice: alicePw, bob: bobPw})
	target := authtest.Dovecot(t, nil)
	dir := t.TempDir()
	addr := freeAddr(t)
	cfgPath := filepath.Join(dir, "mailferry.yaml")
	cfgText := fmt.Sprintf(`nats: {data_dir: ./nats}
log: {level: debug}
auth:
  listen: %s
  provider: dovecot
  dovecot: {passwd_file: %s, scheme: SHA512-CRYPT}
  legacy_imap: {address: %s, tls: none, max_login_failures: 2}
  argon2: {time: 1, memory_kib: 1024}
`, addr, authtest.PasswdPath(target), legacy.Addr)
	// Bob mistypes once below: with the default legacy_imap.max_login_failures
	// (1) his right password would be refused for the hour after that
	// (services/auth: TestFiftyWrongLegacyPasswordsAtOnce...).
	aliceHash := legacyHash(t, legacy, alice)
	csv := fmt.Sprintf("email,role,legacy_hash\n%s,admin,%s\n%s,email-only,\n", strings.ToUpper(alice), aliceHash, bob)
	for name, content := range map[string]string{"mailferry.yaml": cfgText, "users.csv": csv} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	logs := authtest.NewLogSink(t)
	ctx := authtest.Context(t, 3*time.Minute)

	out := run(t, ctx, logs, "users", "import", "-c", cfgPath, "--file", filepath.Join(dir, "users.csv"))
	if out != "imported 2 users: 2 created, 0 updated, 0 unchanged, 0 kept their new password\n" {
		t.Fatalf("import said %q", out)
	}
	out = run(t, ctx, logs, "provision", "-c", cfgPath)
	for _, want := range []string{"mailboxes: 2 (2 created now, 0 already provisioned, 0 failed)", "domain provisioned: example.org"} {
		if !strings.Contains(out, want) {
			t.Fatalf("provision said %q, want %q", out, want)
		}
	}
	if out := run(t, ctx, logs, "provision", "-c", cfgPath); !strings.Contains(out, "0 created now, 2 already provisioned") || strings.Contains(out, "domain provisioned") {
		t.Fatalf("second provision said %q", out)
	}
	if err := authtest.IMAPLogin(target.Addr, alice, alicePw); !authtest.IsRefusal(err) {
		t.Fatalf("target login before the change: %v, want a refusal", err)
	}

	svcCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- Main(svcCtx, "auth", []string{"-c", cfgPath}, io.Discard, logs) }()
	base := "http://" + addr
	waitHealthy(t, base, done)

	// The API tells a front end that alice must update her password.
	var login map[string]any
	postJSON(t, base+"/api/v1/login", map[string]string{"email": alice, "password": alicePw}, http.StatusOK, &login)
	if login["password_update_required"] != true || login["role"] != "admin" {
		t.Fatalf("login answer %v", login)
	}

	// Alice signs in on the page, sees the notice and changes her password.
	c := browser()
	tok := csrf(t, c, base+"/login")
	body := postForm(t, c, base+"/login", url.Values{"csrf_token": {tok}, "email": {alice}, "password": {alicePw}}, http.StatusOK)
	if !strings.Contains(body, "Action needed: update your password") {
		t.Fatalf("no notice on the sign-in page:\n%s", body)
	}
	const aliceNew = "Brand-New-Pass-9!"
	tok = csrf(t, c, base+"/password")
	body = postForm(t, c, base+"/password", url.Values{"csrf_token": {tok}, "email": {alice}, "current_password": {alicePw},
		"new_password": {aliceNew}, "confirm_password": {aliceNew}}, http.StatusOK)
	if !strings.Contains(body, "Your password has been changed.") {
		t.Fatalf("change page said:\n%s", body)
	}
	if err := authtest.IMAPLogin(target.Addr, alice, aliceNew); err != nil {
		t.Fatalf("target login with the new password: %v", err)
	}
	if err := authtest.IMAPLogin(target.Addr, alice, alicePw); !authtest.IsRefusal(err) {
		t.Fatalf("target login with the old password: %v, want a refusal", err)
	}
	postJSON(t, base+"/api/v1/login", map[string]string{"email": alice, "password": aliceNew}, http.StatusOK, &login)
	if login["password_update_required"] != false {
		t.Fatalf("login after the change: %v", login)
	}

	// Bob has no exported hash: the legacy server vouches for his password.
	const bobNew = "Another-New-Pass-8?"
	postJSON(t, base+"/api/v1/password", map[string]string{"email": bob, "current_password": bobPw + "x", "new_password": bobNew}, http.StatusUnauthorized, nil)
	postJSON(t, base+"/api/v1/password", map[string]string{"email": bob, "current_password": bobPw, "new_password": bobNew}, http.StatusOK, nil)
	if err := authtest.IMAPLogin(target.Addr, bob, bobNew); err != nil {
		t.Fatalf("bob's target login with the new password: %v", err)
	}
	if err := authtest.IMAPLogin(target.Addr, bob, bobPw); !authtest.IsRefusal(err) {
		t.Fatalf("bob's target login with the old password: %v, want a refusal", err)
	}

	stop()
	if err := <-done; err != nil {
		t.Fatalf("auth service: %v", err)
	}
	out = run(t, ctx, logs, "users", "list", "-c", cfgPath, "-json")
	for _, user := range []string{alice, bob} {
		if !strings.Contains(out, `{"email":"`+user+`",`) || strings.Count(out, `"provisioned":true,"password_updated":true`) != 2 {
			t.Fatalf("users list:\n%s", out)
		}
	}
	checkEvents(t, filepath.Join(dir, "mailferry.yaml"))
	authtest.AssertAbsent(t, "logs", logs.String(), alicePw, aliceNew, bobPw, bobNew, aliceHash, strings.TrimPrefix(aliceHash, "{SHA512-CRYPT}"))
	authtest.AssertAbsent(t, "users list", out, "$6$", "ARGON2")
}

func checkEvents(t *testing.T, cfgPath string) {
	t.Helper()
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	b, err := broker.Open(authtest.Context(t, 30*time.Second), cfg.NATS, "auth-test", zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	events, raw := authtest.Events(t, b.JS)
	for typ, want := range map[string][]string{
		event.MailboxProvisioned:  {alice, bob},
		event.DomainProvisioned:   {"example.org"},
		event.UserPasswordUpdated: {alice, bob},
	} {
		var keys []string
		for _, e := range authtest.OfType(events, typ) {
			keys = append(keys, e.Key)
		}
		if strings.Join(keys, ",") != strings.Join(want, ",") {
			t.Errorf("%s events for %v, want %v", typ, keys, want)
		}
	}
	authtest.AssertAbsent(t, "events", raw, alicePw, bobPw, "$6$", "argon2")
}

func waitHealthy(t *testing.T, base string, done <-chan error) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-done:
			t.Fatalf("auth service stopped: %v", err)
		default:
		}
		if res, err := http.Get(base + "/healthz"); err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatal("auth service not healthy after 30s")
}

func browser() *http.Client {
	jar, _ := cookiejar.New(nil)
	return &http.Client{Jar: jar}
}

var tokenRe = regexp.MustCompile(`name="csrf_token" value="([^"]+)"`)

func csrf(t *testing.T, c *http.Client, u string) string {
	t.Helper()
	res, err := c.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	m := tokenRe.FindSubmatch(b)
	if m == nil {
		t.Fatalf("no CSRF token on %s", u)
	}
	return string(m[1])
}

func postForm(t *testing.T, c *http.Client, u string, form url.Values, want int) string {
	t.Helper()
	res, err := c.PostForm(u, form)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != want {
		t.Fatalf("POST %s: %s, want %d\n%s", u, res.Status, want, b)
	}
	return string(b)
}

func postJSON(t *testing.T, u string, in any, want int, out any) {
	t.Helper()
	raw, _ := json.Marshal(in)
	res, err := http.Post(u, "application/json", bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if res.StatusCode != want {
		t.Fatalf("POST %s: %s, want %d: %s", u, res.Status, want, b)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatal(err)
		}
	}
}

func TestUsageErrors(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		cmd  string
		args []string
	}{
		{"users", nil},
		{"users", []string{"export"}},
		{"users", []string{"import", "-c", "x.yaml"}},
		{"provision", []string{"-c", "x.yaml", "extra"}},
		{"frobnicate", nil},
	} {
		if err := Main(ctx, tc.cmd, tc.args, io.Discard, io.Discard); !errors.Is(err, ErrUsage) {
			t.Errorf("%s %v: %v, want a usage error", tc.cmd, tc.args, err)
		}
	}
}

func TestImportReportsEveryBadLine(t *testing.T) {
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "mailferry.yaml")
	os.WriteFile(cfgPath, []byte("nats: {data_dir: ./nats}\n"), 0o600)
	csvPath := filepath.Join(dir, "users.csv")
	os.WriteFile(csvPath, []byte("email,role,legacy_hash\nok@example.org,admin,\nbad-address,admin,\nx@example.org,owner,\ny@example.org,admin,{PLAIN}hunter2\nok@example.org,admin,\n"), 0o600)
	var out bytes.Buffer
	err := Main(context.Background(), "users", []string{"import", "-c", cfgPath, "--file", csvPath}, &out, io.Discard)
	if err == nil {
		t.Fatal("import of a bad file succeeded")
	}
	for _, want := range []string{"line 3", "line 4: role \"owner\"", "line 5: legacy_hash", "line 6: ok@example.org already on line 2"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	if strings.Contains(err.Error(), "hunter2") {
		t.Errorf("error quotes a password: %v", err)
	}
}
