package web

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mailferry/mailferry/services/auth/account"
	"github.com/mailferry/mailferry/services/auth/internal/authtest"
	"github.com/mailferry/mailferry/services/auth/policy"
	"github.com/mailferry/mailferry/services/auth/ratelimit"
	"github.com/mailferry/mailferry/services/auth/signin"
	"github.com/mailferry/mailferry/services/auth/target/dovecot"
	"github.com/mailferry/mailferry/shared/broker"
	"github.com/mailferry/mailferry/shared/config"
	"github.com/mailferry/mailferry/shared/event"
)

// Hash of legacyPassword as `doveadm pw -s SHA512-CRYPT` wrote it.
const (
	legacyPassword = "Secret#2024"
	legacyHash     = "{SHA512-CRYPT}$6$gsXZXOgJ9AcCQ7Go$icKZYUWiKoh6I98YIyzZc5X9NK7BwnwiiE9RUzAtrwBo1xBIBoGYW0XrbFO8NmWIrGMUnNI1qA/tU8e4XCs5u1"
	user           = "erin@example.org"
)

type fixture struct {
	srv   *httptest.Server
	logs  *authtest.LogSink
	clock *aheadClock
	cfg   *config.Config
	b     *broker.Broker
}

// aheadClock is the real clock moved forward on request, so a test can
// let a lockout run out without sleeping through it.
type aheadClock struct{ ahead atomic.Int64 }

func (c *aheadClock) now() time.Time          { return time.Now().Add(time.Duration(c.ahead.Load())) }
func (c *aheadClock) advance(d time.Duration) { c.ahead.Add(int64(d)) }

// testFailureTime keeps tests with many failures quick.
const testFailureTime = 20 * time.Millisecond

// newFixture serves the pages over a real sign-in service with accounts
// and rate limits on an embedded nats-server (which listens, so that a
// second instance can attach as a separate process would) and the
// Dovecot adapter on a temporary passwd-file.
func newFixture(t *testing.T, authYAML string, mutate func(*Server), opts ...func(*signin.Options)) *fixture {
	t.Helper()
	passwd := filepath.Join(t.TempDir(), "passwd")
	cfg := authtest.SharedConfig(t, fmt.Sprintf("auth: {provider: dovecot, dovecot: {passwd_file: %s}, argon2: {time: 1, memory_kib: 64}%s}\n", passwd, authYAML))
	b := authtest.Broker(t, cfg)
	ctx := authtest.Context(t, time.Minute)
	store, err := account.Open(ctx, b.JS, authtest.Auth(t, cfg).Bucket, 1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.Import(ctx, []account.Row{{Email: user, Role: account.RoleEmailOnly, LegacyHash: legacyHash}}, account.ImportOptions{Now: time.Now(), Argon2: signin.Argon2FromConfig(authtest.Auth(t, cfg).Argon2)}); err != nil {
		t.Fatal(err)
	}
	f := &fixture{logs: authtest.NewLogSink(t), clock: &aheadClock{}, cfg: cfg, b: b}
	f.srv = f.instance(t, b, mutate, opts...)
	return f
}

// instance starts an auth front and service on b, sharing the fixture's
// configuration, clock and log sink.
func (f *fixture) instance(t *testing.T, b *broker.Broker, mutate func(*Server), opts ...func(*signin.Options)) *httptest.Server {
	t.Helper()
	ctx := authtest.Context(t, time.Minute)
	store, err := account.Open(ctx, b.JS, authtest.Auth(t, f.cfg).Bucket, 1)
	if err != nil {
		t.Fatal(err)
	}
	limits, err := ratelimit.Open(ctx, b.JS, authtest.Auth(t, f.cfg).Bucket+"_limits", 1, ratelimit.LimitsFromConfig(authtest.Auth(t, f.cfg).RateLimit), f.clock.now)
	if err != nil {
		t.Fatal(err)
	}
	pol := policy.FromConfig(authtest.Auth(t, f.cfg).Policy)
	o := signin.Options{
		Accounts: store, Limits: limits, Target: dovecot.New(authtest.Auth(t, f.cfg)), Policy: pol, Argon2: signin.Argon2FromConfig(authtest.Auth(t, f.cfg).Argon2),
		Events: event.Publisher{JS: b.JS, Service: "auth"}, Log: f.logs.Logger(), FailureTime: testFailureTime,
	}
	for _, m := range opts {
		m(&o)
	}
	s := &Server{Auth: signin.New(o), PolicyText: pol.Describe(), Log: f.logs.Logger(), RequestTimeout: 30 * time.Second}
	if mutate != nil {
		mutate(s)
	}
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	return srv
}

// secondInstance is another auth service, with its own connection to the
// fixture's nats-server, as a second process would run.
func (f *fixture) secondInstance(t *testing.T, mutate func(*Server)) *httptest.Server {
	t.Helper()
	return f.instance(t, authtest.SecondBroker(t, f.cfg, f.b), mutate)
}

// browser is an HTTP client with a cookie jar, as a browser would be.
func browser(t *testing.T) *http.Client {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	return &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

var tokenRe = regexp.MustCompile(`name="csrf_token" value="([^"]+)"`)

// getForm loads a page and returns its CSRF token.
func getForm(t *testing.T, c *http.Client, u string) string {
	t.Helper()
	res, err := c.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	m := tokenRe.FindSubmatch(body)
	if res.StatusCode != http.StatusOK || m == nil {
		t.Fatalf("GET %s: %s, no token in\n%s", u, res.Status, body)
	}
	return string(m[1])
}

func post(t *testing.T, c *http.Client, u string, form url.Values) (*http.Response, string) {
	t.Helper()
	res, err := c.PostForm(u, form)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	return res, string(body)
}

func postJSON(t *testing.T, u string, v any) (*http.Response, map[string]any) {
	t.Helper()
	raw, _ := json.Marshal(v)
	res, err := http.Post(u, "application/json", strings.NewReader(string(raw)))
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var out map[string]any
	json.NewDecoder(res.Body).Decode(&out)
	return res, out
}

func TestAPILoginAnswersWhetherAnUpdateIsRequired(t *testing.T) {
	f := newFixture(t, "", nil)
	res, out := postJSON(t, f.srv.URL+"/api/v1/login", map[string]string{"email": user, "password": legacyPassword})
	if res.StatusCode != http.StatusOK || out["password_update_required"] != true || out["email"] != user || out["change_password_url"] != "/password" {
		t.Fatalf("login: %s %v", res.Status, out)
	}
	for _, tc := range []struct {
		email, password string
	}{{user, "wrong"}, {"nobody@example.org", legacyPassword}} {
		res, out = postJSON(t, f.srv.URL+"/api/v1/login", map[string]string{"email": tc.email, "password": tc.password})
		if res.StatusCode != http.StatusUnauthorized || out["error"] != "The email address or password is incorrect." {
			t.Fatalf("login %s: %s %v", tc.email, res.Status, out)
		}
	}
}

func TestAPIPasswordChangeThenLoginNeedsNoUpdate(t *testing.T) {
	f := newFixture(t, "", nil)
	res, out := postJSON(t, f.srv.URL+"/api/v1/password", map[string]string{"email": user, "current_password": legacyPassword, "new_password": "weak"})
	if res.StatusCode != http.StatusUnprocessableEntity || len(out["policy"].([]any)) != 4 {
		t.Fatalf("weak password: %s %v", res.Status, out)
	}
	const newPw = "Sturdy-Passw0rd!"
	res, out = postJSON(t, f.srv.URL+"/api/v1/password", map[string]string{"email": user, "current_password": legacyPassword, "new_password": newPw})
	if res.StatusCode != http.StatusOK || out["password_update_required"] != false {
		t.Fatalf("change: %s %v", res.Status, out)
	}
	res, out = postJSON(t, f.srv.URL+"/api/v1/login", map[string]string{"email": user, "password": newPw})
	if res.StatusCode != http.StatusOK || out["password_update_required"] != false || out["change_password_url"] != nil {
		t.Fatalf("login after change: %s %v", res.Status, out)
	}
	authtest.AssertAbsent(t, "logs", f.logs.String(), newPw, legacyPassword, legacyHash[14:])
}

func TestAPIRefusesOtherContentTypesUnknownFieldsAndHugeBodies(t *testing.T) {
	f := newFixture(t, "", nil)
	res, err := http.Post(f.srv.URL+"/api/v1/login", "text/plain", strings.NewReader(`{"email":"a","password":"b"}`))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusUnsupportedMediaType {
		t.Fatalf("text/plain: %s", res.Status)
	}
	if res, _ := postJSON(t, f.srv.URL+"/api/v1/login", map[string]string{"email": user, "password": legacyPassword, "admin": "true"}); res.StatusCode != http.StatusBadRequest {
		t.Fatalf("unknown field: %s", res.Status)
	}
	if res, _ := postJSON(t, f.srv.URL+"/api/v1/login", map[string]string{"email": user, "password": strings.Repeat("x", 20000)}); res.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("huge body: %s", res.Status)
	}
	if res, out := postJSON(t, f.srv.URL+"/api/v1/login", map[string]string{"email": user, "password": strings.Repeat("x", signin.MaxPasswordBytes+1)}); res.StatusCode != http.StatusBadRequest {
		t.Fatalf("long password: %s %v", res.Status, out)
	}
	if res, out := postJSON(t, f.srv.URL+"/api/v1/login", map[string]string{"email": strings.Repeat("a", 250) + "@example.org", "password": "x"}); res.StatusCode != http.StatusBadRequest {
		t.Fatalf("long email: %s %v", res.Status, out)
	}
}

func TestFormPostWithoutValidCSRFTokenIsForbidden(t *testing.T) {
	f := newFixture(t, "", nil)
	c := browser(t)
	tok := getForm(t, c, f.srv.URL+"/password")
	for name, form := range map[string]url.Values{
		"no token":    {"email": {user}, "current_password": {legacyPassword}, "new_password": {"Sturdy-Passw0rd!"}, "confirm_password": {"Sturdy-Passw0rd!"}},
		"wrong token": {"csrf_token": {tok[:len(tok)-2] + "AA"}, "email": {user}, "current_password": {legacyPassword}, "new_password": {"Sturdy-Passw0rd!"}, "confirm_password": {"Sturdy-Passw0rd!"}},
	} {
		res, body := post(t, c, f.srv.URL+"/password", form)
		if res.StatusCode != http.StatusForbidden || !strings.Contains(body, "expired") {
			t.Fatalf("%s: %s\n%s", name, res.Status, body)
		}
	}
	// A token without its cookie (another browser) is refused too.
	res, _ := post(t, browser(t), f.srv.URL+"/login", url.Values{"csrf_token": {tok}, "email": {user}, "password": {legacyPassword}})
	if res.StatusCode != http.StatusForbidden {
		t.Fatalf("token without cookie: %s", res.Status)
	}
	// Nothing was changed: the legacy password still signs in.
	if res, _ := postJSON(t, f.srv.URL+"/api/v1/login", map[string]string{"email": user, "password": legacyPassword}); res.StatusCode != http.StatusOK {
		t.Fatalf("legacy password after refused forms: %s", res.Status)
	}
}

func TestCrossSiteRequestsAreForbidden(t *testing.T) {
	f := newFixture(t, "", nil)
	req, _ := http.NewRequest(http.MethodPost, f.srv.URL+"/api/v1/login", strings.NewReader(`{"email":"`+user+`","password":"`+legacyPassword+`"}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Sec-Fetch-Site", "cross-site")
	req.Header.Set("Origin", "https://evil.example")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusForbidden {
		t.Fatalf("cross-site API call: %s", res.Status)
	}
}

func TestSignInPageShowsTheUpdateNoticeWithSteps(t *testing.T) {
	f := newFixture(t, "", nil)
	c := browser(t)
	tok := getForm(t, c, f.srv.URL+"/login")
	res, body := post(t, c, f.srv.URL+"/login", url.Values{"csrf_token": {tok}, "email": {user}, "password": {legacyPassword}})
	if res.StatusCode != http.StatusOK {
		t.Fatalf("sign-in: %s", res.Status)
	}
	for _, want := range []string{"Action needed: update your password", `href="/password"`, "Enter your email address <strong>" + user, "10 to 128 characters, with a digit, an upper-case letter and a symbol; not containing your mailbox name"} {
		if !strings.Contains(body, want) {
			t.Errorf("notice lacks %q", want)
		}
	}
	res, body = post(t, c, f.srv.URL+"/login", url.Values{"csrf_token": {tok}, "email": {user}, "password": {"wrong"}})
	if res.StatusCode != http.StatusUnauthorized || !strings.Contains(body, "The email address or password is incorrect.") || strings.Contains(body, "wrong") {
		t.Fatalf("bad sign-in: %s\n%s", res.Status, body)
	}
}

func TestChangePageReportsPolicyAndConfirmationErrors(t *testing.T) {
	f := newFixture(t, "", nil)
	c := browser(t)
	tok := getForm(t, c, f.srv.URL+"/password")
	form := func(newPw, confirm string) url.Values {
		return url.Values{"csrf_token": {tok}, "email": {user}, "current_password": {legacyPassword}, "new_password": {newPw}, "confirm_password": {confirm}}
	}
	res, body := post(t, c, f.srv.URL+"/password", form("Sturdy-Passw0rd!", "Sturdy-Passw0rd?"))
	if res.StatusCode != http.StatusUnprocessableEntity || !strings.Contains(body, "confirmation are not the same") {
		t.Fatalf("mismatch: %s\n%s", res.Status, body)
	}
	res, body = post(t, c, f.srv.URL+"/password", form("lowercase-only", "lowercase-only"))
	if res.StatusCode != http.StatusUnprocessableEntity || !strings.Contains(body, "The new password must contain a digit.") ||
		!strings.Contains(body, "The new password must contain an upper-case letter.") || strings.Contains(body, "lowercase-only") {
		t.Fatalf("policy: %s\n%s", res.Status, body)
	}
	if !strings.Contains(body, `value="`+user+`"`) {
		t.Fatal("the address was not kept in the form")
	}
	res, body = post(t, c, f.srv.URL+"/password", form("Sturdy-Passw0rd!", "Sturdy-Passw0rd!"))
	if res.StatusCode != http.StatusOK || !strings.Contains(body, "Your password has been changed.") {
		t.Fatalf("change: %s\n%s", res.Status, body)
	}
}

func TestEveryAnswerCarriesSecurityHeaders(t *testing.T) {
	f := newFixture(t, "", func(s *Server) { s.Secure = true })
	for _, path := range []string{"/login", "/password", "/static/style.css", "/nope"} {
		res, err := http.Get(f.srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		for h, want := range map[string]string{
			"Content-Security-Policy":   csp,
			"X-Content-Type-Options":    "nosniff",
			"X-Frame-Options":           "DENY",
			"Referrer-Policy":           "no-referrer",
			"Strict-Transport-Security": "max-age=63072000; includeSubDomains",
		} {
			if got := res.Header.Get(h); got != want {
				t.Errorf("%s: %s = %q, want %q", path, h, got, want)
			}
		}
		if path == "/login" {
			c := res.Header.Get("Set-Cookie")
			if !strings.HasPrefix(c, "__Host-mf_csrf=") || !strings.Contains(c, "Secure") || !strings.Contains(c, "HttpOnly") || !strings.Contains(c, "SameSite=Strict") {
				t.Errorf("cookie %q", c)
			}
			if res.Header.Get("Cache-Control") != "no-store" {
				t.Errorf("page cacheable: %q", res.Header.Get("Cache-Control"))
			}
		}
	}
}

// TestBruteForceIsLockedOut guesses one account's password until the
// service refuses, then shows the right password is refused too until
// the lockout ends.
func TestBruteForceIsLockedOut(t *testing.T) {
	f := newFixture(t, ", rate_limit: {account_failures: 5, address_failures: 50, lockout: 2s, window: 1m}", nil)
	var limited *http.Response
	for i := range 10 {
		res, out := postJSON(t, f.srv.URL+"/api/v1/login", map[string]string{"email": user, "password": fmt.Sprintf("guess-%d", i)})
		if res.StatusCode == http.StatusTooManyRequests {
			limited = res
			if i != 5 {
				t.Fatalf("locked out after %d guesses, want 5", i)
			}
			if !strings.HasPrefix(out["error"].(string), "Too many attempts") {
				t.Fatalf("429 body %v", out)
			}
			break
		}
		if res.StatusCode != http.StatusUnauthorized {
			t.Fatalf("guess %d: %s", i, res.Status)
		}
	}
	if limited == nil {
		t.Fatal("10 wrong guesses and no lockout")
	}
	secs, err := strconv.Atoi(limited.Header.Get("Retry-After"))
	if err != nil || secs < 1 || secs > 2 {
		t.Fatalf("Retry-After %q, want 1..2 seconds", limited.Header.Get("Retry-After"))
	}
	if res, _ := postJSON(t, f.srv.URL+"/api/v1/login", map[string]string{"email": user, "password": legacyPassword}); res.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("right password during the lockout: %s, want 429", res.Status)
	}
	// The form shows the same refusal.
	c := browser(t)
	tok := getForm(t, c, f.srv.URL+"/login")
	res, body := post(t, c, f.srv.URL+"/login", url.Values{"csrf_token": {tok}, "email": {user}, "password": {legacyPassword}})
	if res.StatusCode != http.StatusTooManyRequests || res.Header.Get("Retry-After") == "" || !strings.Contains(body, "Too many attempts") {
		t.Fatalf("form during the lockout: %s\n%s", res.Status, body)
	}
	// Retry-After is rounded up to whole seconds, so by then the lockout
	// is over.
	f.clock.advance(time.Duration(secs) * time.Second)
	if res, out := postJSON(t, f.srv.URL+"/api/v1/login", map[string]string{"email": user, "password": legacyPassword}); res.StatusCode != http.StatusOK {
		t.Fatalf("after the lockout: %s %v", res.Status, out)
	}
}

func TestRequestRatePerAddressIsCapped(t *testing.T) {
	f := newFixture(t, ", rate_limit: {address_requests: 3}", nil)
	for i := range 4 {
		res, _ := postJSON(t, f.srv.URL+"/api/v1/login", map[string]string{"email": user, "password": legacyPassword})
		want := http.StatusOK
		if i == 3 {
			want = http.StatusTooManyRequests
		}
		if res.StatusCode != want {
			t.Fatalf("request %d: %s, want %d", i+1, res.Status, want)
		}
	}
}

func TestClientKeyHonoursOnlyTrustedProxies(t *testing.T) {
	s := &Server{TrustedProxies: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}
	for _, tc := range []struct {
		remote, xff, want string
	}{
		{"192.0.2.1:5000", "203.0.113.7", "192.0.2.1"},
		{"10.1.1.1:5000", "203.0.113.7", "203.0.113.7"},
		{"10.1.1.1:5000", "198.51.100.1, 203.0.113.7, 10.2.2.2", "203.0.113.7"},
		{"10.1.1.1:5000", "garbage", "10.1.1.1"},
		{"[2001:db8:1:2:3:4:5:6]:443", "", "2001:db8:1:2::/64"},
	} {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.RemoteAddr = tc.remote
		if tc.xff != "" {
			r.Header.Set("X-Forwarded-For", tc.xff)
		}
		if got := ratelimit.Client(s.client(r)); got != tc.want {
			t.Errorf("remote %s, XFF %q: %s, want %s", tc.remote, tc.xff, got, tc.want)
		}
	}
}
