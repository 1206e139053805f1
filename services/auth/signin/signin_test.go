package signin

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/mailferry/mailferry/services/auth/account"
	"github.com/mailferry/mailferry/services/auth/internal/authtest"
	"github.com/mailferry/mailferry/services/auth/legacyimap"
	"github.com/mailferry/mailferry/services/auth/passhash"
	"github.com/mailferry/mailferry/services/auth/policy"
	"github.com/mailferry/mailferry/services/auth/ratelimit"
	"github.com/mailferry/mailferry/services/auth/target/dovecot"
	"github.com/mailferry/mailferry/shared/broker"
	"github.com/mailferry/mailferry/shared/config"
	"github.com/mailferry/mailferry/shared/event"
)

// Hashes of legacyPassword as Dovecot's doveadm pw wrote them.
const legacyPassword = "Secret#2024"

var legacyHashes = map[string]string{
	"sha512@example.org": "{SHA512-CRYPT}$6$gsXZXOgJ9AcCQ7Go$icKZYUWiKoh6I98YIyzZc5X9NK7BwnwiiE9RUzAtrwBo1xBIBoGYW0XrbFO8NmWIrGMUnNI1qA/tU8e4XCs5u1",
	"md5@example.org":    "{MD5-CRYPT}$1$KNgGc/O0$qtMl.YOs4dk82L22h9qbN1",
	"blf@example.org":    "{BLF-CRYPT}$2y$05$BY6T1kxINzvRGT0ckyBSbua/r3ivx4I27uHPE7W7f3iq7OpKykTdW",
	"ssha@example.org":   "{SSHA}9QgVRMQV4kKPlslxLyqNpON0ROwCgX27",
	"pbkdf2@example.org": "{PBKDF2}$1$EvtKw7dsPfY1aVyZ$5000$36645d833bf5921906b2a906b281f78a12145bb8",
}

type fixture struct {
	svc    *Service
	store  *account.Store
	b      *broker.Broker
	passwd string
	logs   *authtest.LogSink
	cfg    *config.Config
}

// testFailureTime keeps tests with many failures quick; tests of the
// failure time itself set their own.
const testFailureTime = 20 * time.Millisecond

// legacyTime gives the legacy IMAP server of a test time to answer
// (the test Dovecot answers a wrong password after half a second).
func legacyTime(o *Options) { o.FailureTime = 2 * time.Second }

func newFixture(t testing.TB, legacy LegacyVerifier, yaml string, mutate ...func(*Options)) *fixture {
	t.Helper()
	dir := t.TempDir()
	passwd := filepath.Join(dir, "passwd")
	argon := ", argon2: {time: 1, memory_kib: 64}" // cheap, unless yaml says otherwise
	if strings.Contains(yaml, "argon2:") {
		argon = ""
	}
	cfg := authtest.Config(t, "auth: {provider: dovecot, dovecot: {passwd_file: "+passwd+"}"+argon+yaml+"}\n")
	b := authtest.Broker(t, cfg)
	f := &fixture{b: b, passwd: passwd, logs: authtest.NewLogSink(t), cfg: cfg}
	f.store, f.svc = f.instance(t, legacy, mutate...)
	return f
}

// instance opens another service on the fixture's broker, as a second
// auth process would.
func (f *fixture) instance(t testing.TB, legacy LegacyVerifier, mutate ...func(*Options)) (*account.Store, *Service) {
	t.Helper()
	ctx := authtest.Context(t, time.Minute)
	store, err := account.Open(ctx, f.b.JS, authtest.Auth(t, f.cfg).Bucket, 1)
	if err != nil {
		t.Fatal(err)
	}
	limits, err := ratelimit.Open(ctx, f.b.JS, authtest.Auth(t, f.cfg).Bucket+"_limits", 1, ratelimit.LimitsFromConfig(authtest.Auth(t, f.cfg).RateLimit), nil)
	if err != nil {
		t.Fatal(err)
	}
	o := Options{
		Accounts:    store,
		Limits:      limits,
		Legacy:      legacy,
		Target:      dovecot.New(authtest.Auth(t, f.cfg)),
		Policy:      policy.FromConfig(authtest.Auth(t, f.cfg).Policy),
		Argon2:      Argon2FromConfig(authtest.Auth(t, f.cfg).Argon2),
		Events:      event.Publisher{JS: f.b.JS, Service: "auth"},
		Log:         f.logs.Logger(),
		FailureTime: testFailureTime,
	}
	for _, m := range mutate {
		m(&o)
	}
	return store, New(o)
}

func (f *fixture) importUsers(t testing.TB, hashes map[string]string) {
	t.Helper()
	var rows []account.Row
	for e, h := range hashes {
		rows = append(rows, account.Row{Email: e, Role: account.RoleEmailOnly, LegacyHash: h})
	}
	if _, err := f.store.Import(authtest.Context(t, time.Minute), rows, account.ImportOptions{Now: time.Now(), Argon2: Argon2FromConfig(authtest.Auth(t, f.cfg).Argon2)}); err != nil {
		t.Fatal(err)
	}
}

func (f *fixture) hash(t *testing.T, email string) string {
	t.Helper()
	a, err := f.store.Get(authtest.Context(t, 10*time.Second), email)
	if err != nil {
		t.Fatal(err)
	}
	return a.Hash
}

func TestLoginVerifiesLegacyHashesAndUpgradesThem(t *testing.T) {
	f := newFixture(t, nil, "")
	f.importUsers(t, legacyHashes)
	ctx := authtest.Context(t, time.Minute)
	for email := range legacyHashes {
		if _, err := f.svc.Login(ctx, email, legacyPassword+"!", "192.0.2.1"); !errors.Is(err, ErrBadCredentials) {
			t.Fatalf("%s wrong password: %v", email, err)
		}
		res, err := f.svc.Login(ctx, strings.ToUpper(email), legacyPassword, "192.0.2.1")
		if err != nil {
			t.Fatalf("%s: %v", email, err)
		}
		if want := (Result{Email: email, Role: account.RoleEmailOnly, PasswordUpdateRequired: true}); res != want {
			t.Fatalf("%s: %+v, want %+v", email, res, want)
		}
		h := f.hash(t, email)
		if !strings.HasPrefix(h, "{ARGON2ID}") {
			t.Fatalf("%s: hash not upgraded to argon2id", email)
		}
		if ok, _ := passhash.Verify(legacyPassword, h); !ok {
			t.Fatalf("%s: upgraded hash does not verify", email)
		}
		// The upgraded hash keeps working.
		if _, err := f.svc.Login(ctx, email, legacyPassword, "192.0.2.1"); err != nil {
			t.Fatalf("%s after upgrade: %v", email, err)
		}
	}
	authtest.AssertAbsent(t, "logs", f.logs.String(), legacyPassword)
	for _, h := range legacyHashes {
		authtest.AssertAbsent(t, "logs", f.logs.String(), h[strings.IndexByte(h, '}')+1:])
	}
}

func TestUnknownAccountsAndWrongPasswordsLookAlike(t *testing.T) {
	f := newFixture(t, nil, "")
	f.importUsers(t, map[string]string{"known@example.org": legacyHashes["sha512@example.org"]})
	ctx := authtest.Context(t, time.Minute)
	_, errKnown := f.svc.Login(ctx, "known@example.org", "wrong-password", "192.0.2.2")
	_, errUnknown := f.svc.Login(ctx, "unknown@example.org", "wrong-password", "192.0.2.2")
	if errKnown != errUnknown || errKnown != ErrBadCredentials {
		t.Fatalf("known: %v, unknown: %v; want the same ErrBadCredentials", errKnown, errUnknown)
	}
	_, errKnown = f.svc.ChangePassword(ctx, ChangeRequest{Email: "known@example.org", CurrentPassword: "x", NewPassword: "Valid-Passw0rd!", Client: "192.0.2.2"})
	_, errUnknown = f.svc.ChangePassword(ctx, ChangeRequest{Email: "unknown@example.org", CurrentPassword: "x", NewPassword: "Valid-Passw0rd!", Client: "192.0.2.2"})
	if errKnown != errUnknown || errKnown != ErrBadCredentials {
		t.Fatalf("change, known: %v, unknown: %v", errKnown, errUnknown)
	}
}

// TestLockoutPerAccountAndClientAppliesToKnownAndUnknownAlike: the
// guessing client is locked out of the account, existing or not; the
// user at another address is not (an attacker must not be able to lock
// a user out).
func TestLockoutPerAccountAndClientAppliesToKnownAndUnknownAlike(t *testing.T) {
	f := newFixture(t, nil, ", rate_limit: {account_failures: 3, lockout: 1m}")
	f.importUsers(t, map[string]string{"known@example.org": legacyHashes["md5@example.org"]})
	ctx := authtest.Context(t, time.Minute)
	for _, email := range []string{"known@example.org", "ghost@example.org"} {
		for i := range 3 {
			if _, err := f.svc.Login(ctx, email, "guess", "198.51.100.1"); !errors.Is(err, ErrBadCredentials) {
				t.Fatalf("%s guess %d: %v", email, i+1, err)
			}
		}
		_, err := f.svc.Login(ctx, email, legacyPassword, "198.51.100.1")
		var le *LimitedError
		if !errors.As(err, &le) || le.RetryAfter <= 0 || le.RetryAfter > time.Minute {
			t.Fatalf("%s after 3 failures from the same address: %v, want a lockout of at most 1m", email, err)
		}
	}
	if _, err := f.svc.Login(ctx, "known@example.org", legacyPassword, "203.0.113.9"); err != nil {
		t.Fatalf("the right password from another address: %v", err)
	}
	if _, err := f.svc.Login(ctx, "ghost@example.org", legacyPassword, "203.0.113.9"); !errors.Is(err, ErrBadCredentials) {
		t.Fatalf("an unknown account from another address: %v", err)
	}
}

func TestLockoutPerClientAddress(t *testing.T) {
	f := newFixture(t, nil, ", rate_limit: {address_failures: 4, account_failures: 100}")
	f.importUsers(t, map[string]string{"known@example.org": legacyHashes["md5@example.org"]})
	ctx := authtest.Context(t, time.Minute)
	for i := range 4 {
		email := "user" + string(rune('a'+i)) + "@example.org"
		if _, err := f.svc.Login(ctx, email, "guess", "192.0.2.66"); !errors.Is(err, ErrBadCredentials) {
			t.Fatalf("guess %d: %v", i+1, err)
		}
	}
	var le *LimitedError
	if _, err := f.svc.Login(ctx, "known@example.org", legacyPassword, "192.0.2.66"); !errors.As(err, &le) {
		t.Fatalf("from the guessing address: %v, want a lockout", err)
	}
	if _, err := f.svc.Login(ctx, "known@example.org", legacyPassword, "192.0.2.67"); err != nil {
		t.Fatalf("from another address: %v", err)
	}
}

func TestChangePasswordStatesEveryPolicyViolation(t *testing.T) {
	f := newFixture(t, nil, "")
	f.importUsers(t, map[string]string{"pat@example.org": legacyHashes["ssha@example.org"]})
	ctx := authtest.Context(t, time.Minute)
	for _, tc := range []struct {
		newPw string
		want  []string
	}{
		{"short", []string{"must be at least 10 characters long", "must contain a digit", "must contain an upper-case letter", "must contain a symbol (such as ! # % or -)"}},
		{"Patterns-are-4-Pat", []string{"must not contain your mailbox name"}},
		{legacyPassword, []string{"must differ from the current password"}},
	} {
		_, err := f.svc.ChangePassword(ctx, ChangeRequest{Email: "pat@example.org", CurrentPassword: legacyPassword, NewPassword: tc.newPw, Client: "192.0.2.3"})
		var pe *PolicyError
		if !errors.As(err, &pe) || !reflect.DeepEqual(pe.Reasons, tc.want) {
			t.Errorf("new %q: %v, want %v", tc.newPw, err, tc.want)
		}
	}
}

func TestChangePasswordSetsTargetStoresHashAndAnnounces(t *testing.T) {
	f := newFixture(t, nil, "")
	f.importUsers(t, map[string]string{"pat@example.org": legacyHashes["blf@example.org"]})
	ctx := authtest.Context(t, time.Minute)
	const newPw = "Correct-Horse-9-Battery"
	res, err := f.svc.ChangePassword(ctx, ChangeRequest{Email: "pat@example.org", CurrentPassword: legacyPassword, NewPassword: newPw, Client: "192.0.2.4"})
	if err != nil {
		t.Fatal(err)
	}
	if res.PasswordUpdateRequired {
		t.Fatal("update still required after the change")
	}
	passwd, err := os.ReadFile(f.passwd)
	if err != nil {
		t.Fatal(err)
	}
	field := strings.SplitN(strings.TrimPrefix(string(passwd), "pat@example.org:"), ":", 2)[0]
	if ok, _ := passhash.Verify(newPw, field); !ok || !strings.HasPrefix(field, "{SHA512-CRYPT}") {
		t.Fatalf("target passwd-file has %q", passwd)
	}
	if _, err := f.svc.Login(ctx, "pat@example.org", legacyPassword, "192.0.2.4"); !errors.Is(err, ErrBadCredentials) {
		t.Fatalf("old password after the change: %v", err)
	}
	res, err = f.svc.Login(ctx, "pat@example.org", newPw, "192.0.2.4")
	if err != nil || res.PasswordUpdateRequired {
		t.Fatalf("new password: %+v, %v", res, err)
	}
	events, raw := authtest.Events(t, f.b.JS)
	updated := authtest.OfType(events, event.UserPasswordUpdated)
	if len(updated) != 1 || updated[0].Key != "pat@example.org" {
		t.Fatalf("user.password.updated events: %+v", updated)
	}
	var data PasswordUpdatedData
	json.Unmarshal(updated[0].Data, &data)
	if data != (PasswordUpdatedData{Email: "pat@example.org", Role: account.RoleEmailOnly, Provider: "dovecot"}) {
		t.Fatalf("event data %+v", data)
	}
	for _, where := range []struct{ name, text string }{{"events", raw}, {"logs", f.logs.String()}} {
		authtest.AssertAbsent(t, where.name, where.text, newPw, legacyPassword, field, f.hash(t, "pat@example.org"))
	}
}

// TestUserWithoutHashIsVerifiedByTheLegacyServer uses a real Dovecot as
// the legacy platform.
func TestUserWithoutHashIsVerifiedByTheLegacyServer(t *testing.T) {
	const user, pw = "nohash@example.org", "Only-Legacy-Knows-1"
	legacy := authtest.Dovecot(t, map[string]string{user: pw})
	srv := config.IMAP{Address: legacy.Addr, TLS: config.TLSNone, Auth: config.AuthUser, Connections: 2,
		CommandTimeout: config.Duration(10 * time.Second), DialTimeout: config.Duration(5 * time.Second)}
	f := newFixture(t, legacyimap.New(srv), "", legacyTime)
	f.importUsers(t, map[string]string{user: ""})
	ctx := authtest.Context(t, time.Minute)
	if _, err := f.svc.Login(ctx, user, pw+"x", "192.0.2.5"); !errors.Is(err, ErrBadCredentials) {
		t.Fatalf("wrong password: %v", err)
	}
	if f.hash(t, user) != "" {
		t.Fatal("a hash was stored after a refused login")
	}
	if _, err := f.svc.Login(ctx, user, pw, "192.0.2.5"); err != nil {
		t.Fatal(err)
	}
	if h := f.hash(t, user); !strings.HasPrefix(h, "{ARGON2ID}") {
		t.Fatal("the proven password's hash was not stored")
	}
	authtest.AssertAbsent(t, "logs", f.logs.String(), pw)
}

func TestLegacyServerDownIsUnavailableNotBadCredentials(t *testing.T) {
	srv := config.IMAP{Address: "127.0.0.1:1", TLS: config.TLSNone, Auth: config.AuthUser, Connections: 1,
		CommandTimeout: config.Duration(5 * time.Second), DialTimeout: config.Duration(2 * time.Second)}
	f := newFixture(t, legacyimap.New(srv), "")
	f.importUsers(t, map[string]string{"nohash@example.org": ""})
	_, err := f.svc.Login(authtest.Context(t, time.Minute), "nohash@example.org", "Whatever-1!", "192.0.2.6")
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("legacy down: %v, want ErrUnavailable", err)
	}
	// Not the client's doing: the attempt does not count against it.
	for i := range 6 {
		if _, err := f.svc.Login(authtest.Context(t, time.Minute), "nohash@example.org", "Whatever-1!", "192.0.2.6"); !errors.Is(err, ErrUnavailable) {
			t.Fatalf("attempt %d: %v, want ErrUnavailable, not a lockout", i+2, err)
		}
	}
}
