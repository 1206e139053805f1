package auth

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mailferry/mailferry/services/auth/authconfig"
	"github.com/mailferry/mailferry/shared/config"
)

// The configuration contract of the issue, verbatim.
const contract = `
auth:
  listen: 127.0.0.1:8080
  provider: dovecot                  # dovecot | opensrs
  dovecot: {passwd_file: /path/passwd, scheme: SHA512-CRYPT}
  opensrs: {url: https://admin.test.hostedemail.com/api, user: admin@example.com, password_file: /path}
  legacy_imap: {address: 127.0.0.1:10143, tls: none}   # optional: lazy verification
`

// loadAuth parses raw as a whole file and loads its auth section.
func loadAuth(t *testing.T, raw string, env []string) (*authconfig.Auth, error) {
	t.Helper()
	c, err := config.Parse([]byte(raw), t.TempDir(), env)
	if err != nil {
		return nil, err
	}
	return authconfig.Load(c)
}

func TestConfigContractParsesWithDefaults(t *testing.T) {
	a, err := loadAuth(t, contract, nil)
	if err != nil {
		t.Fatal(err)
	}
	if a.Listen != "127.0.0.1:8080" || a.Provider != "dovecot" || a.Dovecot.PasswdFile != "/path/passwd" || a.Dovecot.Scheme != "SHA512-CRYPT" ||
		a.OpenSRS.URL != "https://admin.test.hostedemail.com/api" || a.LegacyIMAP.Address != "127.0.0.1:10143" || a.LegacyIMAP.TLS != "none" {
		t.Fatalf("parsed %+v", a)
	}
	if a.Bucket != "mf_accounts" || a.Policy.MinLength != 10 || !*a.Policy.RequireSymbol || a.RateLimit.AccountFailures != 5 ||
		a.RateLimit.Lockout.Std() != 15*time.Minute || a.LegacyIMAP.Auth != config.AuthUser {
		t.Fatalf("defaults %+v", a)
	}
	env := []string{"MAILFERRY_AUTH_PROVIDER=opensrs", "MAILFERRY_AUTH_POLICY_MIN_LENGTH=12"}
	a, err = loadAuth(t, contract, env)
	if err != nil || a.Provider != "opensrs" || a.Policy.MinLength != 12 {
		t.Fatalf("environment overrides: %+v, %v", a, err)
	}
}

func TestConfigRefusesUnsafeOrIncompleteAuthSections(t *testing.T) {
	for _, tc := range []struct{ yaml, want string }{
		{"auth: {provider: exchange}", `provider "exchange"`},
		{"auth: {provider: dovecot}", "passwd_file is required"},
		{"auth: {provider: dovecot, dovecot: {passwd_file: p, scheme: PLAIN}}", `scheme "PLAIN"`},
		{"auth: {provider: opensrs, opensrs: {url: http://admin.example/api, user: u, password_file: p}}", "https://"},
		{"auth: {provider: dovecot, dovecot: {passwd_file: p}, listen: 0.0.0.0:8080}", "not loopback"},
		{"auth: {provider: dovecot, dovecot: {passwd_file: p}, tls: {cert_file: c}}", "go together"},
		{"auth: {provider: dovecot, dovecot: {passwd_file: p}, policy: {min_length: 20, max_length: 10}}", "min_length"},
		{"auth: {provider: dovecot, dovecot: {passwd_file: p}, trusted_proxies: [nope]}", "trusted_proxies"},
		{"auth: {provider: dovecot, dovecot: {passwd_file: p}, legacy_imap: {address: 'h:1', tls: plain}}", "legacy_imap"},
		{"auth: {provider: dovecot, dovecot: {passwd_file: p, schema: SSHA512}}", "field schema not found"},
		{"auth: {provider: dovecot, dovecot: {passwd_file: p}, legacy_imap: {adress: 'h:1'}}", "field adress not found"},
	} {
		_, err := loadAuth(t, tc.yaml, nil)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error with %q", tc.yaml, err, tc.want)
		}
	}
	for _, ok := range []string{
		"auth: {provider: dovecot, dovecot: {passwd_file: p}, listen: 0.0.0.0:8443, tls: {cert_file: c, key_file: k}}",
		"auth: {provider: dovecot, dovecot: {passwd_file: p}, listen: 10.0.0.5:8080, allow_plaintext: true, trusted_proxies: [10.0.0.0/8]}",
		"nats: {url: nats://x:4222}", // a file without an auth section
	} {
		if _, err := loadAuth(t, ok, nil); err != nil {
			t.Errorf("%s: %v", ok, err)
		}
	}
}

func TestConfigResolvesTheAuthPathsAndTakesListsFromTheEnvironment(t *testing.T) {
	dir := t.TempDir()
	c, err := config.Parse([]byte("auth: {provider: dovecot, dovecot: {passwd_file: users}, legacy_imap: {address: 'h:1', ca_file: ca.pem}}"), dir,
		[]string{"MAILFERRY_AUTH_TRUSTED_PROXIES=10.0.0.0/8, 192.0.2.1"})
	if err != nil {
		t.Fatal(err)
	}
	a, err := authconfig.Load(c)
	if err != nil {
		t.Fatal(err)
	}
	if a.Dovecot.PasswdFile != dir+"/users" || a.LegacyIMAP.CAFile != dir+"/ca.pem" {
		t.Errorf("paths %q %q, want them under %s", a.Dovecot.PasswdFile, a.LegacyIMAP.CAFile, dir)
	}
	if len(a.TrustedProxies) != 2 || a.TrustedProxies[1] != "192.0.2.1" {
		t.Errorf("trusted_proxies = %q", a.TrustedProxies)
	}
}

func TestTheExampleAuthConfigLoads(t *testing.T) {
	c, err := config.Load(filepath.Join("..", "..", "deploy", "auth.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	a, err := authconfig.Load(c)
	if err != nil || !a.Configured() {
		t.Fatalf("deploy/auth.yaml: %+v, %v", a, err)
	}
	if c.NATS.SetsMailStream() {
		t.Error("deploy/auth.yaml sets the mail stream's limits, which only the extractor's file should")
	}
}

// TestOpenSRSClusterGivesTheEndpointsAndRefusesAMismatch: opensrs.cluster
// names the OMA URL and the IMAP host; an explicit url or target.address
// overrides them, but one on another cluster is a configuration error.
func TestOpenSRSClusterGivesTheEndpointsAndRefusesAMismatch(t *testing.T) {
	const creds = "user: admin@example.com, password_file: /p"
	for _, tc := range []struct {
		name, yaml      string
		wantURL, wantIM string
		wantErr         string
	}{
		{"test cluster", "auth: {provider: opensrs, opensrs: {cluster: test, " + creds + "}}", "https://admin.test.hostedemail.com/api", "mail.test.hostedemail.com:993", ""},
		{"cluster a", "auth: {provider: opensrs, opensrs: {cluster: a, " + creds + "}}", "https://admin.a.hostedemail.com/api", "mail.a.hostedemail.com:993", ""},
		{"cluster b", "auth: {provider: opensrs, opensrs: {cluster: b, " + creds + "}}", "https://admin.b.hostedemail.com/api", "mail.b.hostedemail.com:993", ""},
		{"explicit url wins", "auth: {provider: opensrs, opensrs: {cluster: a, url: 'https://127.0.0.1:8443/api', " + creds + "}}", "https://127.0.0.1:8443/api", "mail.a.hostedemail.com:993", ""},
		{"url without cluster", "auth: {provider: opensrs, opensrs: {url: 'https://admin.b.hostedemail.com/api', " + creds + "}}", "https://admin.b.hostedemail.com/api", "", ""},
		{"target on the same cluster", "target: {address: 'mail.a.hostedemail.com:993', auth: user}\nauth: {provider: opensrs, opensrs: {cluster: a, " + creds + "}}", "https://admin.a.hostedemail.com/api", "mail.a.hostedemail.com:993", ""},
		{"white-label target", "target: {address: 'imap.example.net:993', auth: user}\nauth: {provider: opensrs, opensrs: {cluster: b, " + creds + "}}", "https://admin.b.hostedemail.com/api", "mail.b.hostedemail.com:993", ""},
		{"unknown cluster", "auth: {provider: opensrs, opensrs: {cluster: c, " + creds + "}}", "", "", `cluster "c": want test, a or b`},
		{"neither cluster nor url", "auth: {provider: opensrs, opensrs: {" + creds + "}}", "", "", "cluster (test, a or b) or url is required"},
		{"url of another cluster", "auth: {provider: opensrs, opensrs: {cluster: a, url: 'https://admin.b.hostedemail.com/api', " + creds + "}}", "", "", "cluster b's endpoint, not cluster a's"},
		{"target on another cluster", "target: {address: 'mail.b.hostedemail.com:993', auth: user}\nauth: {provider: opensrs, opensrs: {cluster: a, " + creds + "}}", "", "", "is on OpenSRS cluster b but auth.opensrs is cluster a"},
		{"the loader's cluster is another", "target: {auth: token, opensrs: {cluster: b, " + creds + "}}\nauth: {provider: opensrs, opensrs: {cluster: a, " + creds + "}}", "", "", "is on OpenSRS cluster b but auth.opensrs is cluster a"},
		{"target and url disagree", "target: {address: 'mail.test.hostedemail.com:993', auth: user}\nauth: {provider: opensrs, opensrs: {url: 'https://admin.a.hostedemail.com/api', " + creds + "}}", "", "", "is on OpenSRS cluster test but auth.opensrs is cluster a"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, err := loadAuth(t, tc.yaml, nil)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Load = %v, want an error with %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if a.OpenSRS.URL != tc.wantURL || a.OpenSRS.IMAPAddress() != tc.wantIM {
				t.Fatalf("url %q imap %q, want %q %q", a.OpenSRS.URL, a.OpenSRS.IMAPAddress(), tc.wantURL, tc.wantIM)
			}
		})
	}
}

// TestOpenSRSPasswordLengthDefaultsToTheProvidersAndOnlyTightens: with
// provider opensrs the policy's maximum is OpenSRS's 54 characters; a
// lower max_length is kept, a higher one refused.
func TestOpenSRSPasswordLengthDefaultsToTheProvidersAndOnlyTightens(t *testing.T) {
	const base = "auth: {provider: opensrs, opensrs: {cluster: test, user: admin@example.com, password_file: /p}"
	for _, tc := range []struct {
		name, policy string
		want         int
		wantErr      string
	}{
		{"default", "", 54, ""},
		{"tighter", ", policy: {max_length: 40}", 40, ""},
		{"looser", ", policy: {max_length: 60}", 0, "policy.max_length 60: OpenSRS takes passwords of at most 54 characters"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, err := loadAuth(t, base+tc.policy+"}", nil)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Load = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || a.Policy.MaxLength != tc.want || Policy(*a).MaxLength != tc.want {
				t.Fatalf("max_length %+v, %v, want %d", a.Policy, err, tc.want)
			}
		})
	}
	if a, err := loadAuth(t, "auth: {provider: dovecot, dovecot: {passwd_file: p}}", nil); err != nil || a.Policy.MaxLength != 128 {
		t.Fatalf("dovecot default: %+v, %v", a, err)
	}
}
