package web

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mailferry/mailferry/services/auth/passhash"
	"github.com/mailferry/mailferry/services/auth/signin"
)

// behindProxy makes the test's loopback connections a trusted proxy, so
// X-Forwarded-For names the client: tests play attackers and users at
// different addresses.
func behindProxy(s *Server) {
	s.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}
}

// login is one API sign-in; from, when set, is the client's address.
type login struct{ email, password, from string }

type answer struct {
	status     int
	retryAfter string
}

func (l login) send(t *testing.T, base string) answer {
	t.Helper()
	body, _ := json.Marshal(map[string]string{"email": l.email, "password": l.password})
	req, _ := http.NewRequest(http.MethodPost, base+"/api/v1/login", strings.NewReader(string(body)))
	req.Header.Set("Content-Type", "application/json")
	if l.from != "" {
		req.Header.Set("X-Forwarded-For", l.from)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Error(err)
		return answer{}
	}
	res.Body.Close()
	return answer{status: res.StatusCode, retryAfter: res.Header.Get("Retry-After")}
}

// sendAtOnce sends every login at the same moment, spread over the
// instances' base URLs, and counts the answers by status.
func sendAtOnce(t *testing.T, bases []string, logins []login) (map[int]int, []answer) {
	t.Helper()
	var (
		wg    sync.WaitGroup
		start = make(chan struct{})
		out   = make([]answer, len(logins))
	)
	for i, l := range logins {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			out[i] = l.send(t, bases[i%len(bases)])
		}()
	}
	close(start)
	wg.Wait()
	counts := map[int]int{}
	for _, a := range out {
		counts[a.status]++
	}
	return counts, out
}

// burstWithRightPassword is 49 wrong passwords and the right one.
func burstWithRightPassword(from string) []login {
	var out []login
	for i := range 49 {
		out = append(out, login{user, fmt.Sprintf("guess-%d", i), from})
		if i == 24 {
			out = append(out, login{user, legacyPassword, from})
		}
	}
	return out
}

// TestBurstFromOneAddressNeverGetsPastTheLimit sends 49 wrong passwords
// and the right one for one account at once, from one address, with the
// default limits (5 per account and client, 20 per client): at most 5
// wrong ones are checked (4 when the right one took a slot), whatever the
// interleaving and however many instances share the broker; once the limit is reached, the right
// password is refused like the rest. No burst escalates the lockout.
func TestBurstFromOneAddressNeverGetsPastTheLimit(t *testing.T) {
	for _, tc := range []struct {
		name      string
		instances int
		before    int // wrong passwords sent one by one before the burst
	}{
		{"all at once", 1, 0},
		{"all at once over two instances", 2, 0},
		{"after the limit was reached", 1, 5},
		{"after the limit was reached, over two instances", 2, 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, "", nil)
			bases := []string{f.srv.URL}
			if tc.instances == 2 {
				bases = append(bases, f.secondInstance(t, nil).URL)
			}
			for i := range tc.before {
				if a := (login{user, fmt.Sprintf("early-%d", i), ""}).send(t, bases[i%len(bases)]); a.status != http.StatusUnauthorized {
					t.Fatalf("early guess %d: %d", i+1, a.status)
				}
			}
			counts, answers := sendAtOnce(t, bases, burstWithRightPassword(""))
			// The right password, when admitted, takes one of the
			// slots until its attempt is given back; by then the rest
			// of the burst may have been refused, so one fewer wrong
			// password may be checked, never one more.
			checked := 5 - tc.before
			wrong, right := counts[http.StatusUnauthorized], counts[http.StatusOK]
			if wrong > checked || wrong < checked-right || right > 1 || (tc.before > 0 && right != 0) ||
				wrong+right+counts[http.StatusTooManyRequests] != 50 {
				t.Fatalf("answers %v: want at most %d wrong passwords checked (one fewer only if the right one was admitted), the right one at most among the admitted, the rest 429", counts, checked)
			}
			for _, a := range answers {
				if a.status != http.StatusTooManyRequests {
					continue
				}
				// One lockout of 15 minutes, not doubled by the burst.
				if secs, err := strconv.Atoi(a.retryAfter); err != nil || secs < 1 || secs > 900 {
					t.Fatalf("429 with Retry-After %q, want 1..900", a.retryAfter)
				}
			}
		})
	}
}

// TestLockoutElsewhereDoesNotLockTheUserOut: an attacker at one address
// guesses until locked out; the user, at another address, signs in with
// the right password; the attacker, even with the right password, does
// not.
func TestLockoutElsewhereDoesNotLockTheUserOut(t *testing.T) {
	f := newFixture(t, "", behindProxy)
	second := f.secondInstance(t, behindProxy)
	const attacker, home = "198.51.100.66", "203.0.113.5"
	var statuses []int
	for i := range 10 {
		statuses = append(statuses, login{user, fmt.Sprintf("guess-%d", i), attacker}.send(t, f.srv.URL).status)
	}
	if fmt.Sprint(statuses) != fmt.Sprint([]int{401, 401, 401, 401, 401, 429, 429, 429, 429, 429}) {
		t.Fatalf("attacker's guesses answered %v", statuses)
	}
	for _, tc := range []struct {
		name string
		l    login
		base string
		want int
	}{
		{"the user at home", login{user, legacyPassword, home}, f.srv.URL, http.StatusOK},
		{"the user at home, on the other instance", login{user, legacyPassword, home}, second.URL, http.StatusOK},
		{"the attacker with the right password", login{user, legacyPassword, attacker}, f.srv.URL, http.StatusTooManyRequests},
		{"the attacker on the other instance", login{user, legacyPassword, attacker}, second.URL, http.StatusTooManyRequests},
	} {
		if a := tc.l.send(t, tc.base); a.status != tc.want {
			t.Errorf("%s: %d, want %d", tc.name, a.status, tc.want)
		}
	}
}

// TestSecondInstanceEnforcesTheLockout: a password locked out on one
// instance is refused by another one sharing the broker.
func TestSecondInstanceEnforcesTheLockout(t *testing.T) {
	f := newFixture(t, ", rate_limit: {account_failures: 3}", nil)
	second := f.secondInstance(t, nil)
	for i := range 3 {
		if a := (login{user, fmt.Sprintf("guess-%d", i), ""}).send(t, f.srv.URL); a.status != http.StatusUnauthorized {
			t.Fatalf("guess %d: %d", i+1, a.status)
		}
	}
	if a := (login{user, legacyPassword, ""}).send(t, second.URL); a.status != http.StatusTooManyRequests || a.retryAfter == "" {
		t.Fatalf("right password at the second instance: %d (Retry-After %q), want 429", a.status, a.retryAfter)
	}
}

// TestHashingIsBoundedAndSaturationAnswers503: 120 unknown-account
// sign-ins at once compute at most HashSlots hashes at a time; those
// that find no slot and no room to wait get 503 with Retry-After.
func TestHashingIsBoundedAndSaturationAnswers503(t *testing.T) {
	var inFlight, most atomic.Int32
	slow := func(password, stored string) (bool, error) {
		n := inFlight.Add(1)
		defer inFlight.Add(-1)
		for {
			m := most.Load()
			if n <= m || most.CompareAndSwap(m, n) {
				break
			}
		}
		time.Sleep(20 * time.Millisecond) // an argon2id of the default size takes longer
		return passhash.Verify(password, stored)
	}
	f := newFixture(t, ", rate_limit: {address_requests: 1000, address_failures: 1000}", nil, func(o *signin.Options) {
		o.HashSlots, o.HashQueue, o.HashWait, o.VerifyHash = 2, 4, time.Second, slow
	})
	var logins []login
	for i := range 120 {
		logins = append(logins, login{fmt.Sprintf("nobody%d@example.org", i), "Wrong-Passw0rd!", ""})
	}
	counts, answers := sendAtOnce(t, []string{f.srv.URL}, logins)
	if counts[http.StatusServiceUnavailable] == 0 || counts[http.StatusUnauthorized] < 6 || counts[http.StatusUnauthorized]+counts[http.StatusServiceUnavailable] != 120 {
		t.Fatalf("answers %v: want 401s for those hashed and 503s for the rest", counts)
	}
	if m := most.Load(); m > 2 {
		t.Fatalf("%d hashes at once, want at most 2", m)
	}
	for _, a := range answers {
		if a.status == http.StatusServiceUnavailable && a.retryAfter != "2" {
			t.Fatalf("503 with Retry-After %q, want 2", a.retryAfter)
		}
	}
	// A 503 for want of a slot is not a failure of the client.
	if a := (login{user, legacyPassword, ""}).send(t, f.srv.URL); a.status != http.StatusOK {
		t.Fatalf("after the flood: %d", a.status)
	}
}

func TestOversizedFormIsTooLarge(t *testing.T) {
	f := newFixture(t, "", nil)
	c := browser(t)
	tok := getForm(t, c, f.srv.URL+"/login")
	res, body := post(t, c, f.srv.URL+"/login", url.Values{"csrf_token": {tok}, "email": {user}, "password": {strings.Repeat("x", 17<<10)}})
	if res.StatusCode != http.StatusRequestEntityTooLarge || !strings.Contains(body, "too large") {
		t.Fatalf("17 KiB form: %s\n%s", res.Status, body)
	}
}
