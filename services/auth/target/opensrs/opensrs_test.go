package opensrs

import (
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mailferry/mailferry/services/auth/internal/authtest"
	"github.com/mailferry/mailferry/services/auth/testenv/omafake"
)

// newClient configures the adapter as an operator would, against the
// fake's HTTPS endpoint and certificate.
func newClient(t *testing.T, srv *httptest.Server, password string) *Client {
	t.Helper()
	return newClientAs(t, srv, omafake.Admin, password)
}

// newClientAs is newClient with the OMA user user.
func newClientAs(t *testing.T, srv *httptest.Server, user, password string) *Client {
	t.Helper()
	dir := t.TempDir()
	ca := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	pwFile := filepath.Join(dir, "oma.pw")
	if err := os.WriteFile(pwFile, []byte(password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c := authtest.Config(t, fmt.Sprintf("auth: {provider: opensrs, opensrs: {url: %q, user: %s, password_file: %q, ca_file: %q, token_hours: 48}}",
		srv.URL+"/api", user, pwFile, ca))
	cl, err := New(authtest.Auth(t, c))
	if err != nil {
		t.Fatal(err)
	}
	return cl
}

func TestCreateMailboxesIsIdempotent(t *testing.T) {
	fake := omafake.Start(t, "example.org")
	srv := fake.Server
	c := newClient(t, srv, omafake.Password)
	ctx := authtest.Context(t, 30*time.Second)
	users := []string{"ann@example.org", "bob@example.org"}
	for i, err := range c.CreateMailboxes(ctx, users) {
		if err != nil {
			t.Fatalf("%s: %v", users[i], err)
		}
	}
	pwA, okA := fake.UserPassword("ann@example.org")
	pwB, okB := fake.UserPassword("bob@example.org")
	if !okA || !okB || pwA == pwB {
		t.Fatalf("mailboxes not created with distinct random passwords")
	}
	// A second run meets error 7 (exists) and leaves the mailboxes alone.
	for i, err := range c.CreateMailboxes(ctx, users) {
		if err != nil {
			t.Fatalf("second run, %s: %v", users[i], err)
		}
	}
	if again, _ := fake.UserPassword("ann@example.org"); again != pwA {
		t.Fatal("second run changed an existing mailbox")
	}
	for _, cl := range fake.Clients() {
		if cl != "mailferry" {
			t.Fatalf("credentials.client %q", cl)
		}
	}
}

func TestCreateMailboxReportsDocumentedErrors(t *testing.T) {
	fake := omafake.Start(t, "example.org")
	srv := fake.Server
	ctx := authtest.Context(t, 30*time.Second)
	errs := newClient(t, srv, "wrong").CreateMailboxes(ctx, []string{"z@example.org"})
	var oe *Error
	if !errors.As(errs[0], &oe) || oe.Number != ErrNumCredentials {
		t.Fatalf("bad credentials: %v, want error 1", errs[0])
	}
	if strings.Contains(errs[0].Error(), "wrong") {
		t.Fatalf("error quotes the password: %v", errs[0])
	}
}

// TestDomainsAreCreatedFirstOnce: a mailbox of a domain OpenSRS does not
// host yet is preceded by get_domain and change_domain (create_only);
// the domain is asked about once per run, and a second run creates
// nothing.
func TestDomainsAreCreatedFirstOnce(t *testing.T) {
	fake := omafake.Start(t, "example.org")
	c := newClient(t, fake.Server, omafake.Password)
	ctx := authtest.Context(t, 30*time.Second)
	users := []string{"ann@new.example", "bob@new.example", "cy@example.org"}
	for i, err := range c.CreateMailboxes(ctx, users) {
		if err != nil {
			t.Fatalf("%s: %v", users[i], err)
		}
	}
	if got := strings.Join(fake.CreatedDomains(), ","); got != "new.example" {
		t.Fatalf("created domains %q, want new.example", got)
	}
	want := "get_domain,change_domain,change_user,change_user,get_domain,change_user"
	if got := strings.Join(fake.Requests(), ","); got != want {
		t.Fatalf("requests %s, want %s", got, want)
	}
	for i, err := range c.CreateMailboxes(ctx, users) {
		if err != nil {
			t.Fatalf("second run, %s: %v", users[i], err)
		}
	}
	if got := len(fake.CreatedDomains()); got != 1 {
		t.Fatalf("%d domains created after a second run", got)
	}
}

// TestDomainAdministratorCannotCreateADomain: a domain-level OMA user
// gets error 4 from change_domain; the mailboxes of that domain fail with
// a message naming the credential level needed and the user, never the
// password, and the other domains' mailboxes are created.
func TestDomainAdministratorCannotCreateADomain(t *testing.T) {
	fake := omafake.Start(t, "example.org")
	c := newClientAs(t, fake.Server, omafake.DomainAdmin, omafake.Password)
	ctx := authtest.Context(t, 30*time.Second)
	errs := c.CreateMailboxes(ctx, []string{"x@unknown.example", "y@example.org", "w@unknown.example"})
	for _, i := range []int{0, 2} {
		if !errors.Is(errs[i], ErrNeedsCompanyAdmin) || !strings.Contains(errs[i].Error(), "company-level") ||
			!strings.Contains(errs[i].Error(), omafake.DomainAdmin) || !strings.Contains(errs[i].Error(), "unknown.example") {
			t.Fatalf("mailbox %d: %v, want ErrNeedsCompanyAdmin naming the user and the domain", i, errs[i])
		}
		authtest.AssertAbsent(t, "error", errs[i].Error(), omafake.Password)
	}
	if errs[1] != nil {
		t.Fatalf("the existing domain's mailbox failed too: %v", errs[1])
	}
	if got := strings.Count(strings.Join(fake.Requests(), ","), "change_domain"); got != 1 {
		t.Fatalf("change_domain called %d times, want once per run and domain", got)
	}
}

// TestMailboxesAreCreatedWithIMAPEnabled: the creating change_user sets
// service_imap4 to enabled and a password, and nothing else.
func TestMailboxesAreCreatedWithIMAPEnabled(t *testing.T) {
	fake := omafake.Start(t, "example.org")
	c := newClient(t, fake.Server, omafake.Password)
	ctx := authtest.Context(t, 30*time.Second)
	if errs := c.CreateMailboxes(ctx, []string{"ann@example.org"}); errs[0] != nil {
		t.Fatal(errs[0])
	}
	if v, ok := fake.Attribute("ann@example.org", "service_imap4"); !ok || v != `"enabled"` {
		t.Fatalf("service_imap4 = %s, want \"enabled\"", v)
	}
	if _, ok := fake.Attribute("ann@example.org", "password"); !ok {
		t.Fatal("no password sent")
	}
	if got := len(mailboxAttributes("ann@example.org")); got != 2 {
		t.Fatalf("%d attributes, want password and service_imap4 only", got)
	}
}

// TestAnswersAreReadAsDocumented: the documented fields are read
// strictly and everything else tolerantly, so an undocumented hints of
// any shape neither hides error 7 nor a refusal.
func TestAnswersAreReadAsDocumented(t *testing.T) {
	for _, tc := range []struct {
		name, answer string
		wantNum      int // -1: success; -2: "not an OMA response"
		wantHint     string
	}{
		{"exists with hints a list", `{"success": false, "error": "exists", "error_number": 7, "hints": ["x"]}`, 7, ""},
		{"exists with hints a string", `{"success": false, "error": "exists", "error_number": 7, "hints": "user exists"}`, 7, ""},
		{"exists with hints of mixed values", `{"success": false, "error_number": 7, "hints": {"user": "exists", "n": 3}}`, 7, "user=exists"},
		{"unknown fields", `{"success": true, "audit": {"id": [1, 2]}, "settable_attribute": "x"}`, -1, ""},
		{"success not a boolean", `{"success": "false", "error_number": 7}`, -2, ""},
		{"error_number not a number", `{"success": false, "error_number": "7"}`, -2, ""},
		{"no success", `{"error_number": 7}`, -2, ""},
		{"not an object", `[true]`, -2, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				fmt.Fprint(w, tc.answer)
			}))
			defer srv.Close()
			c := newClient(t, srv, omafake.Password)
			err := c.ChangeUser(authtest.Context(t, 30*time.Second), "ann@example.org", map[string]any{}, true)
			var oe *Error
			switch tc.wantNum {
			case -1:
				if err != nil {
					t.Fatalf("ChangeUser = %v, want success", err)
				}
			case -2:
				if err == nil || !strings.Contains(err.Error(), "not an OMA response") {
					t.Fatalf("ChangeUser = %v, want not an OMA response", err)
				}
			default:
				if !errors.As(err, &oe) || oe.Number != tc.wantNum {
					t.Fatalf("ChangeUser = %v, want error %d", err, tc.wantNum)
				}
				if k, v, _ := strings.Cut(tc.wantHint, "="); tc.wantHint != "" && (len(oe.Hints) != 1 || oe.Hints[k] != v) {
					t.Fatalf("hints %v, want %s", oe.Hints, tc.wantHint)
				}
			}
		})
	}
}

// TestExistsWithOddHintsStillCountsAsDone: a re-run meeting error 7 with
// an undocumented hints shape is not a failure.
func TestExistsWithOddHintsStillCountsAsDone(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if strings.HasSuffix(r.URL.Path, "/get_domain") {
			fmt.Fprint(w, `{"success": true, "attributes": {}}`)
			return
		}
		fmt.Fprint(w, `{"success": false, "error": "An object with this name already exists.", "error_number": 7, "hints": [{"user": "exists"}]}`)
	}))
	defer srv.Close()
	errs := newClient(t, srv, omafake.Password).CreateMailboxes(authtest.Context(t, 30*time.Second), []string{"ann@example.org"})
	if errs[0] != nil {
		t.Fatalf("re-run: %v", errs[0])
	}
}

func TestSetPasswordSendsItAndReportsRefusals(t *testing.T) {
	fake := omafake.Start(t, "example.org")
	srv := fake.Server
	c := newClient(t, srv, omafake.Password)
	ctx := authtest.Context(t, 30*time.Second)
	if errs := c.CreateMailboxes(ctx, []string{"ann@example.org"}); errs[0] != nil {
		t.Fatal(errs[0])
	}
	if err := c.SetPassword(ctx, "ann@example.org", "Zebra-Crossing-42"); err != nil {
		t.Fatal(err)
	}
	if pw, _ := fake.UserPassword("ann@example.org"); pw != "Zebra-Crossing-42" {
		t.Fatal("the provider did not get the new password")
	}
	err := c.SetPassword(ctx, "ann@example.org", "Ann-Is-Great-42")
	var re *RefusedError
	if !errors.As(err, &re) || re.Refusal() != "is not accepted by the new provider" {
		t.Fatalf("refused password: %v, want a RefusedError", err)
	}
	if strings.Contains(err.Error(), "Ann-Is-Great-42") {
		t.Fatalf("error quotes the password: %v", err)
	}
	if pw, _ := fake.UserPassword("ann@example.org"); pw != "Zebra-Crossing-42" {
		t.Fatal("a refused password was stored")
	}
}

func TestMintTokenReturnsASessionToken(t *testing.T) {
	fake := omafake.Start(t, "example.org")
	srv := fake.Server
	c := newClient(t, srv, omafake.Password)
	ctx := authtest.Context(t, 30*time.Second)
	if _, _, err := c.MintToken(ctx, "nobody@example.org"); !isOMA(err, ErrNumNotFound) {
		t.Fatalf("token for a missing user: %v, want error 2", err)
	}
	c.CreateMailboxes(ctx, []string{"ann@example.org"})
	tok, d, err := c.MintToken(ctx, "ann@example.org")
	if err != nil {
		t.Fatal(err)
	}
	if tok == "" || d != 48*time.Hour {
		t.Fatalf("token %q valid %v, want 48h", tok, d)
	}
	if fake.TokenUser(tok) != "ann@example.org" {
		t.Fatal("token not for ann")
	}
}

func TestHTTPFailuresAreErrorsWithoutSecrets(t *testing.T) {
	fake := omafake.Start(t, "example.org")
	srv := fake.Server
	c := newClient(t, srv, omafake.Password)
	ctx := authtest.Context(t, 30*time.Second)
	fake.FailNext(http.StatusInternalServerError)
	err := c.SetPassword(ctx, "ann@example.org", "Zebra-Crossing-42")
	if err == nil || !strings.Contains(err.Error(), "500") {
		t.Fatalf("HTTP 500: %v", err)
	}
	authtest.AssertAbsent(t, "error", err.Error(), "Zebra-Crossing-42", omafake.Password)

	redirect := httptest.NewTLSServer(http.RedirectHandler(srv.URL+"/api/change_user", http.StatusTemporaryRedirect))
	defer redirect.Close()
	rc := newClient(t, redirect, omafake.Password)
	if err := rc.SetPassword(ctx, "ann@example.org", "Zebra-Crossing-42"); err == nil {
		t.Fatal("a redirect was followed with the credentials")
	}
	if reqs := fake.Requests(); len(reqs) != 0 {
		t.Fatalf("the fake got %v through a redirect", reqs)
	}
}

func TestUnusablePasswordAvoidsNamesAndIsRandom(t *testing.T) {
	seen := map[string]bool{}
	for _, email := range []string{"a@cd.example", "x@cd.example", "9@cd.example", "#@cd.example", "ab@cd.example"} {
		local, _, _ := strings.Cut(email, "@")
		for range 50 {
			pw := unusablePassword(email)
			l := strings.ToLower(pw)
			if strings.Contains(l, local) || len(pw) != 43 || seen[pw] ||
				!strings.ContainsAny(pw, digits) || !strings.ContainsAny(pw, uppers) || !strings.ContainsAny(pw, symbols) {
				t.Fatalf("bad unusable password %q for %s", pw, email)
			}
			seen[pw] = true
		}
	}
}

func isOMA(err error, n int) bool {
	var oe *Error
	return errors.As(err, &oe) && oe.Number == n
}

// TestPasswordFileReadableByOthersIsRefused: the OMA password file must
// be the owner's alone; the error names the file and its mode, not what
// it holds.
func TestPasswordFileReadableByOthersIsRefused(t *testing.T) {
	const secret = "Oma-Admin-Secret-9"
	for _, tc := range []struct {
		mode    os.FileMode
		refused bool
	}{
		{0o600, false},
		{0o400, false},
		{0o640, true},
		{0o644, true},
		{0o604, true},
		{0o620, true},
	} {
		t.Run(fmt.Sprintf("%04o", tc.mode), func(t *testing.T) {
			pwFile := filepath.Join(t.TempDir(), "oma.pw")
			if err := os.WriteFile(pwFile, []byte(secret+"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(pwFile, tc.mode); err != nil {
				t.Fatal(err)
			}
			t.Setenv("MAILFERRY_AUTH_OPENSRS_PASSWORD", "")
			c := authtest.Config(t, fmt.Sprintf("auth: {provider: opensrs, opensrs: {url: https://admin.test.hostedemail.com/api, user: admin@example.com, password_file: %q}}", pwFile))
			_, err := New(authtest.Auth(t, c))
			if !tc.refused {
				if err != nil {
					t.Fatalf("New = %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), pwFile) || !strings.Contains(err.Error(), fmt.Sprintf("%04o", tc.mode)) {
				t.Fatalf("New = %v, want an error naming %s and its mode", err, pwFile)
			}
			if strings.Contains(err.Error(), secret) {
				t.Fatalf("the error shows the password: %v", err)
			}
		})
	}
}
