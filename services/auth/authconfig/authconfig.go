// Package authconfig is the auth service's section of the configuration
// file (auth:), its defaults and its checks. It lives with the auth
// service, not in shared/config, so that the service that reads it is the
// one that defines it; it is a package of its own because the service's
// subpackages (targets, policy, rate limits, web) read it too.
package authconfig

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"github.com/mailferry/mailferry/shared/config"
)

// Section is the top-level key of the section in the file.
const Section = "auth"

// Load decodes the auth section of cfg (strictly, with MAILFERRY_AUTH_*
// overrides and paths resolved against the file's directory), fills in
// defaults and validates it. A file without the section gives an Auth
// that is not Configured.
func Load(cfg *config.Config) (*Auth, error) {
	a := &Auth{}
	if err := cfg.Section(Section, a); err != nil {
		return nil, err
	}
	// legacy_imap is the shared IMAP type, which carries no path tags.
	a.LegacyIMAP.CAFile = cfg.Path(a.LegacyIMAP.CAFile)
	a.defaults()
	if err := a.validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", Section, err)
	}
	if a.Configured() && a.SourceCredentials.Enabled() && cfg.Mailboxes.File == "" {
		return nil, fmt.Errorf("%s.source_credentials.key_file needs mailboxes.file: it says which mailboxes wait for their user's password", Section)
	}
	if a.Provider == ProviderOpenSRS {
		if err := a.OpenSRS.checkTarget(cfg.Target.Address); err != nil {
			return nil, err
		}
		// One cluster: the loader's target.opensrs (in the same file) may
		// not name another.
		if lc := cfg.Target.OpenSRS.Cluster; lc != "" && a.OpenSRS.Cluster != "" && lc != a.OpenSRS.Cluster {
			return nil, fmt.Errorf("target.opensrs.cluster %s but %s.opensrs.cluster %s: mailboxes are created on one cluster and written on the other", lc, Section, a.OpenSRS.Cluster)
		}
	}
	return a, nil
}

func setDefault(p *string, v string) {
	if *p == "" {
		*p = v
	}
}

// Auth configures the auth service: where it listens, which target provider
// receives the users' new credentials, how passwords are checked and how
// hard guessing is made.
type Auth struct {
	// Listen is host:port of the HTTP(S) listener.
	Listen string `yaml:"listen"`
	// Provider names the target adapter: dovecot or opensrs.
	Provider string  `yaml:"provider"`
	Dovecot  Dovecot `yaml:"dovecot"`
	OpenSRS  OpenSRS `yaml:"opensrs"`
	// LegacyIMAP, when its address is set, verifies users that have no
	// stored hash by a LOGIN to the legacy server (its auth key is
	// ignored: the user's own password is always used).
	LegacyIMAP config.IMAP `yaml:"legacy_imap"`
	// SourceCredentials, when its key file is set, hands the legacy
	// password a user proves to the migration of their mailbox when the
	// mailboxes file (mailboxes.file, needed then) has no source password
	// for it (shared/sourcecred).
	SourceCredentials SourceCredentials `yaml:"source_credentials"`
	// Bucket is the JetStream key-value bucket of the accounts.
	Bucket string `yaml:"bucket"`
	TLS    TLS    `yaml:"tls"`
	// AllowPlaintext permits a listener without TLS on an address other
	// than loopback, for a TLS-terminating proxy in front of the service.
	AllowPlaintext bool `yaml:"allow_plaintext"`
	// TrustedProxies are addresses or CIDR prefixes whose
	// X-Forwarded-For header names the real client.
	TrustedProxies []string       `yaml:"trusted_proxies"`
	Policy         PasswordPolicy `yaml:"policy"`
	RateLimit      RateLimit      `yaml:"rate_limit"`
	Argon2         Argon2         `yaml:"argon2"`
	// RequestTimeout bounds one HTTP request, provider call included.
	RequestTimeout config.Duration `yaml:"request_timeout"`
}

// SourceCredentials configures the hand-off of proven legacy passwords.
type SourceCredentials struct {
	// KeyFile is the operator's key (32 bytes: raw, hex or base64; mode
	// 0600 or 0400) that seals them: the file the extractor's
	// source.credential_key_file names.
	KeyFile string `yaml:"key_file" config:"path"`
}

// Enabled reports whether proven passwords are handed off.
func (s SourceCredentials) Enabled() bool { return s.KeyFile != "" }

// Target providers of Auth.Provider.
const (
	ProviderDovecot = "dovecot"
	ProviderOpenSRS = "opensrs"
)

// Dovecot configures the Dovecot target adapter.
type Dovecot struct {
	// PasswdFile is the passwd-file passdb the target Dovecot reads.
	PasswdFile string `yaml:"passwd_file" config:"path"`
	// Scheme of the hashes written: SHA512-CRYPT, SHA256-CRYPT,
	// BLF-CRYPT, SSHA512 or ARGON2ID.
	Scheme string `yaml:"scheme"`
}

// OpenSRS configures the OpenSRS Mail API (OMA) adapter.
type OpenSRS struct {
	// Cluster is the OpenSRS email cluster the mailboxes live on: test,
	// a or b. It gives URL its default and names the IMAP host the
	// migration writes to (IMAPAddress), so that the two cannot disagree.
	Cluster string `yaml:"cluster"`
	// URL is the OMA base URL; method names are appended to it. Empty:
	// the cluster's documented endpoint.
	URL string `yaml:"url"`
	// User and PasswordFile are the OMA credentials of a company
	// administrator: only one can create the domains (change_domain).
	User         string `yaml:"user"`
	PasswordFile string `yaml:"password_file" config:"path"`
	// CAFile adds trusted certificates (a private test endpoint).
	CAFile string `yaml:"ca_file" config:"path"`
	// Client is sent as credentials.client, for OpenSRS's logs.
	Client  string          `yaml:"client"`
	Timeout config.Duration `yaml:"timeout"`
	// TokenDir, when set, makes provisioning mint a session token per
	// mailbox (generate_token) and write it to TokenDir/<mailbox>, mode
	// 0600: the loader's target_password_file for migration logins.
	TokenDir string `yaml:"token_dir" config:"path"`
	// TokenHours is the tokens' lifetime.
	TokenHours int `yaml:"token_hours"`
}

// TLS configures TLS on the listener.
type TLS struct {
	CertFile string `yaml:"cert_file" config:"path"`
	KeyFile  string `yaml:"key_file" config:"path"`
	// MinVersion is "1.2" or "1.3".
	MinVersion string `yaml:"min_version"`
}

// Enabled reports whether the listener serves TLS.
func (t TLS) Enabled() bool { return t.CertFile != "" }

// PasswordPolicy is what the target provider accepts as a new password.
// The defaults are at least 10 characters with a digit, an upper-case
// letter and a symbol, and at most 128 characters; with provider opensrs
// at most OpenSRS's 54 (a configured max_length may lower that, not
// raise it), and the policy package adds OpenSRS's character rules.
type PasswordPolicy struct {
	MinLength     int   `yaml:"min_length"`
	MaxLength     int   `yaml:"max_length"`
	RequireDigit  *bool `yaml:"require_digit"`
	RequireUpper  *bool `yaml:"require_upper"`
	RequireLower  *bool `yaml:"require_lower"`
	RequireSymbol *bool `yaml:"require_symbol"`
}

// RateLimit bounds guessing: after AccountFailures failed attempts on
// one account (or AddressFailures from one client address) within Window,
// further attempts are refused for Lockout, doubling with each lockout up
// to MaxLockout.
type RateLimit struct {
	AccountFailures int             `yaml:"account_failures"`
	AddressFailures int             `yaml:"address_failures"`
	Window          config.Duration `yaml:"window"`
	Lockout         config.Duration `yaml:"lockout"`
	MaxLockout      config.Duration `yaml:"max_lockout"`
	// AddressRequests bounds all sign-in and change requests per client
	// address and minute, failed or not (each costs a hash computation).
	AddressRequests int `yaml:"address_requests"`
}

// Argon2 are the argon2id parameters of the hashes the service stores.
type Argon2 struct {
	Time      int `yaml:"time"`
	MemoryKiB int `yaml:"memory_kib"`
	Threads   int `yaml:"threads"`
}

// Configured reports whether the file has an auth section worth validating.
func (a *Auth) Configured() bool { return a.Provider != "" }

func (a *Auth) defaults() {
	setDefault(&a.Listen, "127.0.0.1:8080")
	setDefault(&a.Bucket, "mf_accounts")
	setDefault(&a.Dovecot.Scheme, "SHA512-CRYPT")
	a.Dovecot.Scheme = strings.ToUpper(a.Dovecot.Scheme)
	setDefault(&a.OpenSRS.Client, "mailferry")
	if a.OpenSRS.Timeout == 0 {
		a.OpenSRS.Timeout = config.Duration(30 * time.Second)
	}
	if a.OpenSRS.TokenHours == 0 {
		a.OpenSRS.TokenHours = 168
	}
	setDefault(&a.TLS.MinVersion, "1.2")
	a.LegacyIMAP.Auth = config.AuthUser
	setDefault(&a.LegacyIMAP.TLS, config.TLSImplicit)
	if a.LegacyIMAP.Connections == 0 {
		a.LegacyIMAP.Connections = 8
	}
	if a.LegacyIMAP.CommandTimeout == 0 {
		a.LegacyIMAP.CommandTimeout = config.Duration(15 * time.Second)
	}
	if a.LegacyIMAP.DialTimeout == 0 {
		a.LegacyIMAP.DialTimeout = config.Duration(10 * time.Second)
	}
	if a.LegacyIMAP.MaxLoginFailures == 0 {
		// As source's: the migration's and the sign-ins' refusals count
		// together (shared/loginlimit), and MailEnable locks an account
		// after a few. A user who mistyped their password once waits
		// the hour.
		a.LegacyIMAP.MaxLoginFailures = 1
	}
	if a.RequestTimeout == 0 {
		a.RequestTimeout = config.Duration(30 * time.Second)
	}
	a.Policy.defaults(a.Provider)
	if a.Provider == ProviderOpenSRS && a.OpenSRS.URL == "" {
		a.OpenSRS.URL = config.OpenSRSClusters[a.OpenSRS.Cluster].URL
	}
	a.RateLimit.defaults()
	a.Argon2.defaults()
}

func (p *PasswordPolicy) defaults(provider string) {
	if p.MinLength == 0 {
		p.MinLength = 10
	}
	if p.MaxLength == 0 {
		p.MaxLength = 128
		if provider == ProviderOpenSRS {
			p.MaxLength = OpenSRSMaxPassword
		}
	}
	yes, no := true, false
	for _, b := range []struct {
		p   **bool
		def *bool
	}{{&p.RequireDigit, &yes}, {&p.RequireUpper, &yes}, {&p.RequireLower, &no}, {&p.RequireSymbol, &yes}} {
		if *b.p == nil {
			v := *b.def
			*b.p = &v
		}
	}
}

func (r *RateLimit) defaults() {
	if r.AccountFailures == 0 {
		r.AccountFailures = 5
	}
	if r.AddressFailures == 0 {
		r.AddressFailures = 20
	}
	if r.Window == 0 {
		r.Window = config.Duration(15 * time.Minute)
	}
	if r.Lockout == 0 {
		r.Lockout = config.Duration(15 * time.Minute)
	}
	if r.MaxLockout == 0 {
		r.MaxLockout = config.Duration(24 * time.Hour)
	}
	if r.AddressRequests == 0 {
		r.AddressRequests = 60
	}
}

// The defaults are OWASP's minimum for argon2id: cheap enough to verify
// on every sign-in of a small machine, far above any legacy scheme.
func (g *Argon2) defaults() {
	if g.Time == 0 {
		g.Time = 2
	}
	if g.MemoryKiB == 0 {
		g.MemoryKiB = 19 * 1024
	}
	if g.Threads == 0 {
		g.Threads = 1
	}
}

// dovecotSchemes are the schemes the Dovecot adapter can write.
var dovecotSchemes = []string{"SHA512-CRYPT", "SHA256-CRYPT", "BLF-CRYPT", "SSHA512", "ARGON2ID"}

func (a *Auth) validate() error {
	if !a.Configured() {
		// A service's own file may leave the auth section out.
		return nil
	}
	if _, _, err := net.SplitHostPort(a.Listen); err != nil {
		return fmt.Errorf("listen %q: %w", a.Listen, err)
	}
	switch a.Provider {
	case ProviderDovecot:
		if err := a.Dovecot.validate(); err != nil {
			return fmt.Errorf("dovecot: %w", err)
		}
	case ProviderOpenSRS:
		if err := a.OpenSRS.validate(); err != nil {
			return fmt.Errorf("opensrs: %w", err)
		}
	default:
		return fmt.Errorf("provider %q: want %s or %s", a.Provider, ProviderDovecot, ProviderOpenSRS)
	}
	if a.LegacyIMAP.Address != "" {
		if err := a.LegacyIMAP.Validate(); err != nil {
			return fmt.Errorf("legacy_imap: %w", err)
		}
	}
	if err := a.validateListener(); err != nil {
		return err
	}
	if _, err := ParsePrefixes(a.TrustedProxies); err != nil {
		return fmt.Errorf("trusted_proxies: %w", err)
	}
	if err := a.Policy.validate(); err != nil {
		return fmt.Errorf("policy: %w", err)
	}
	if a.Provider == ProviderOpenSRS && a.Policy.MaxLength > OpenSRSMaxPassword {
		// The page would accept what the provider then refuses.
		return fmt.Errorf("policy.max_length %d: OpenSRS takes passwords of at most %d characters; set %d or less", a.Policy.MaxLength, OpenSRSMaxPassword, OpenSRSMaxPassword)
	}
	if a.RateLimit.AccountFailures < 1 || a.RateLimit.AddressFailures < 1 || a.RateLimit.AddressRequests < 1 {
		return errors.New("rate_limit: failures and requests must be at least 1")
	}
	if err := a.Argon2.validate(); err != nil {
		return fmt.Errorf("argon2: %w", err)
	}
	return nil
}

func (a *Auth) validateListener() error {
	if (a.TLS.CertFile == "") != (a.TLS.KeyFile == "") {
		return errors.New("tls: cert_file and key_file go together")
	}
	switch a.TLS.MinVersion {
	case "1.2", "1.3":
	default:
		return fmt.Errorf("tls.min_version %q: want 1.2 or 1.3", a.TLS.MinVersion)
	}
	if a.TLS.Enabled() || a.AllowPlaintext {
		return nil
	}
	host, _, _ := net.SplitHostPort(a.Listen)
	if host == "localhost" {
		return nil
	}
	if ip, err := netip.ParseAddr(host); err == nil && ip.IsLoopback() {
		return nil
	}
	// Passwords would cross the network in clear.
	return fmt.Errorf("listen %q is not loopback: configure tls.cert_file and tls.key_file, or allow_plaintext behind a TLS proxy", a.Listen)
}

func (d *Dovecot) validate() error {
	if d.PasswdFile == "" {
		return errors.New("passwd_file is required")
	}
	for _, s := range dovecotSchemes {
		if d.Scheme == s {
			return nil
		}
	}
	return fmt.Errorf("scheme %q: want one of %s", d.Scheme, strings.Join(dovecotSchemes, ", "))
}

func (o *OpenSRS) validate() error {
	if o.Cluster != "" {
		if _, ok := config.OpenSRSClusters[o.Cluster]; !ok {
			return fmt.Errorf("cluster %q: want test, a or b", o.Cluster)
		}
	}
	if o.URL == "" {
		return errors.New("cluster (test, a or b) or url is required")
	}
	u, err := url.Parse(o.URL)
	if err != nil {
		return fmt.Errorf("url: %w", err)
	}
	if u.Scheme != "https" || u.Host == "" {
		// The API receives users' passwords.
		return fmt.Errorf("url %q: want an https:// URL", o.URL)
	}
	if o.User == "" {
		return errors.New("user is required")
	}
	if o.PasswordFile == "" {
		return errors.New("password_file is required (or MAILFERRY_AUTH_OPENSRS_PASSWORD)")
	}
	if o.TokenHours < 1 {
		return fmt.Errorf("token_hours %d: want at least 1", o.TokenHours)
	}
	if uc := config.HostCluster(u.Hostname()); o.Cluster != "" && uc != "" && uc != o.Cluster {
		return fmt.Errorf("url %q is cluster %s's endpoint, not cluster %s's", o.URL, uc, o.Cluster)
	}
	return nil
}

func (g *Argon2) validate() error {
	if g.Time < 1 || g.Threads < 1 || g.Threads > 255 {
		return fmt.Errorf("time %d, threads %d: want time >= 1 and 1 <= threads <= 255", g.Time, g.Threads)
	}
	if g.MemoryKiB < 8*g.Threads || g.MemoryKiB > 4<<20 {
		return fmt.Errorf("memory_kib %d: want at least 8 per thread and at most 4 GiB", g.MemoryKiB)
	}
	return nil
}

func (p *PasswordPolicy) validate() error {
	if p.MinLength < 1 || p.MaxLength < p.MinLength {
		return fmt.Errorf("min_length %d, max_length %d: want 1 <= min <= max", p.MinLength, p.MaxLength)
	}
	if p.MaxLength > 1024 {
		return fmt.Errorf("max_length %d: want at most 1024", p.MaxLength)
	}
	return nil
}

// OpenSRSMaxPassword is the longest plain-text password OpenSRS takes:
// "between 1 and 54 characters" (https://email.opensrs.guide/docs/data-constraints,
// section "Password").
const OpenSRSMaxPassword = 54

// IMAPAddress is host:port of the IMAP service of the cluster (""
// without one): the target.address the migration writes to, unless
// target.address says otherwise.
func (o OpenSRS) IMAPAddress() string { return config.OpenSRSClusters[o.Cluster].IMAP }

// checkTarget refuses a target IMAP host (target.address of the same
// file) on another cluster than the OMA's: mailboxes created on one
// cluster cannot be reached on the other, and tokens minted by one do
// not log in to the other. Hosts whose cluster cannot be told pass.
func (o OpenSRS) checkTarget(address string) error {
	if address == "" {
		return nil
	}
	host := address
	if h, _, err := net.SplitHostPort(address); err == nil {
		host = h
	}
	want := o.Cluster
	if want == "" {
		if u, err := url.Parse(o.URL); err == nil {
			want = config.HostCluster(u.Hostname())
		}
	}
	if got := config.HostCluster(host); want != "" && got != "" && got != want {
		return fmt.Errorf("target.address %q is on OpenSRS cluster %s but %s.opensrs is cluster %s: mailboxes are created on one cluster and written on the other", address, got, Section, want)
	}
	return nil
}

// OpenSRSPassword returns the OMA password, from
// MAILFERRY_AUTH_OPENSRS_PASSWORD or opensrs.password_file.
func (a *Auth) OpenSRSPassword() (string, error) {
	return config.Secret(config.EnvPrefix+"AUTH_OPENSRS_PASSWORD", a.OpenSRS.PasswordFile)
}

// ParsePrefixes parses addresses ("192.0.2.1") and CIDR prefixes
// ("10.0.0.0/8").
func ParsePrefixes(list []string) ([]netip.Prefix, error) {
	out := make([]netip.Prefix, 0, len(list))
	for _, s := range list {
		if p, err := netip.ParsePrefix(s); err == nil {
			out = append(out, p.Masked())
			continue
		}
		ip, err := netip.ParseAddr(s)
		if err != nil {
			return nil, fmt.Errorf("%q: neither an address nor a CIDR prefix", s)
		}
		out = append(out, netip.PrefixFrom(ip, ip.BitLen()))
	}
	return out, nil
}
