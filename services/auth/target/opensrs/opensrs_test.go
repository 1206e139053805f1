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
	"github.com/mailferry/mailferry/services/auth/internal/omafake"
)

// newClient configures the adapter as an operator would, against the
// fake's HTTPS endpoint and certificate.
func newClient(t *testing.T, srv *httptest.Server, password string) *Client {
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
	c := authtest.Config(t, fmt.Sprintf("auth: {provider: opensrs, opensrs: {url: %q, user: admin@example.com, password_file: %q, ca_file: %q, token_hours: 48}}",
		srv.URL+"/api", pwFile, ca))
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
	errs := newClient(t, srv, omafake.Password).CreateMailboxes(ctx, []string{"x@unknown.example", "y@example.org"})
	var oe *Error
	if !errors.As(errs[0], &oe) || oe.Number != ErrNumNotFound || oe.Method != "change_user" {
		t.Fatalf("unknown domain: %v, want error 2", errs[0])
	}
	if errs[1] != nil {
		t.Fatalf("the next mailbox failed too: %v", errs[1])
	}
	errs = newClient(t, srv, "wrong").CreateMailboxes(ctx, []string{"z@example.org"})
	if !errors.As(errs[0], &oe) || oe.Number != ErrNumCredentials {
		t.Fatalf("bad credentials: %v, want error 1", errs[0])
	}
	if strings.Contains(errs[0].Error(), "wrong") {
		t.Fatalf("error quotes the password: %v", errs[0])
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
	if !errors.As(err, &re) || !strings.Contains(re.Refusal(), "user name") {
		t.Fatalf("refused password: %v, want a RefusedError with OpenSRS's hint", err)
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
