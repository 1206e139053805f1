// Package auth assembles the auth service: accounts in JetStream, the
// target provider's adapter, the legacy IMAP verifier, the sign-in core
// and its HTTP front. The daemon (mailferry auth, mailferry-auth), the
// import (mailferry users import) and provisioning (mailferry provision)
// all start here.
package auth

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/mailferry/mailferry/services/auth/authconfig"

	"github.com/rs/zerolog"

	"github.com/mailferry/mailferry/services/auth/account"
	"github.com/mailferry/mailferry/services/auth/internal/keylock"
	"github.com/mailferry/mailferry/services/auth/legacyimap"
	"github.com/mailferry/mailferry/services/auth/passhash"
	"github.com/mailferry/mailferry/services/auth/policy"
	"github.com/mailferry/mailferry/services/auth/provision"
	"github.com/mailferry/mailferry/services/auth/ratelimit"
	"github.com/mailferry/mailferry/services/auth/signin"
	"github.com/mailferry/mailferry/services/auth/target/dovecot"
	"github.com/mailferry/mailferry/services/auth/target/opensrs"
	"github.com/mailferry/mailferry/services/auth/web"
	"github.com/mailferry/mailferry/shared/broker"
	"github.com/mailferry/mailferry/shared/command"
	"github.com/mailferry/mailferry/shared/config"
	"github.com/mailferry/mailferry/shared/event"
	"github.com/mailferry/mailferry/shared/loginlimit"
	"github.com/mailferry/mailferry/shared/metrics"
	"github.com/mailferry/mailferry/shared/sourcecred"
)

// ServiceName is the service's name in logs and events.
const ServiceName = "auth"

// provisionBatch is how many mailboxes one target call creates.
const provisionBatch = 200

// Adapter is a target provider: it creates mailboxes and sets passwords.
type Adapter interface {
	provision.Target
	signin.Target
}

// ErrNotConfigured is returned when the file has no auth section.
var ErrNotConfigured = errors.New("auth.provider is not set: the configuration has no auth section")

// NewAdapter returns the configured target adapter.
func NewAdapter(c authconfig.Auth) (Adapter, error) {
	switch c.Provider {
	case authconfig.ProviderDovecot:
		return dovecot.New(c), nil
	case authconfig.ProviderOpenSRS:
		return opensrs.New(c)
	}
	return nil, ErrNotConfigured
}

// Accounts opens the accounts bucket.
func Accounts(ctx context.Context, cfg *config.Config, b *broker.Broker) (*account.Store, error) {
	a, err := authconfig.Load(cfg)
	if err != nil {
		return nil, err
	}
	return account.Open(ctx, b.JS, a.Bucket, cfg.NATS.Replicas)
}

// LimitsBucket is the key-value bucket of the rate limits and lockouts:
// the accounts bucket's name with this suffix (mf_accounts_limits).
const LimitsBucket = "_limits"

// Limits opens the rate-limit bucket next to the accounts bucket.
func Limits(ctx context.Context, cfg *config.Config, b *broker.Broker) (*ratelimit.Store, error) {
	a, err := authconfig.Load(cfg)
	if err != nil {
		return nil, err
	}
	return ratelimit.Open(ctx, b.JS, a.Bucket+LimitsBucket, cfg.NATS.Replicas, ratelimit.LimitsFromConfig(a.RateLimit), nil)
}

// Import reads users.csv from r into the accounts bucket, wrapping every
// legacy hash in argon2id with the configured parameters.
func Import(ctx context.Context, cfg *config.Config, b *broker.Broker, r io.Reader) (account.ImportResult, error) {
	a, err := authconfig.Load(cfg)
	if err != nil {
		return account.ImportResult{}, err
	}
	rows, err := account.ReadCSV(r)
	if err != nil {
		return account.ImportResult{}, err
	}
	store, err := Accounts(ctx, cfg, b)
	if err != nil {
		return account.ImportResult{}, err
	}
	return store.Import(ctx, rows, account.ImportOptions{Now: time.Now().UTC(), Argon2: signin.Argon2FromConfig(a.Argon2)})
}

// Policy is the configured password policy, with bcrypt's 72-byte limit
// when the Dovecot target writes BLF-CRYPT and OpenSRS's rules with the
// opensrs target.
func Policy(a authconfig.Auth) policy.Policy {
	p := policy.FromConfig(a.Policy)
	if a.Provider == authconfig.ProviderDovecot && a.Dovecot.Scheme == passhash.BLFCrypt {
		p.MaxBytes = policy.BcryptMaxBytes
	}
	if a.Provider == authconfig.ProviderOpenSRS {
		p = p.ForOpenSRS()
	}
	return p
}

// Provision creates every imported user's mailbox at the target (of the
// given domains only, when any are given: a campaign's turn).
func Provision(ctx context.Context, cfg *config.Config, b *broker.Broker, log zerolog.Logger, domains ...string) (provision.Report, error) {
	a, err := authconfig.Load(cfg)
	if err != nil {
		return provision.Report{}, err
	}
	if !a.Configured() {
		return provision.Report{}, ErrNotConfigured
	}
	target, err := NewAdapter(*a)
	if err != nil {
		return provision.Report{}, err
	}
	store, err := Accounts(ctx, cfg, b)
	if err != nil {
		return provision.Report{}, err
	}
	p := &provision.Provisioner{
		Accounts:  store,
		Target:    target,
		Events:    event.Publisher{JS: b.JS, Service: ServiceName},
		Log:       log,
		BatchSize: provisionBatch,
		Domains:   domains,
	}
	if m, ok := target.(provision.TokenMinter); ok && a.OpenSRS.TokenDir != "" {
		p.Tokens, p.TokenDir = m, a.OpenSRS.TokenDir
	}
	return p.Run(ctx)
}

// Needs are the auth service's shared resources: it publishes events (its
// accounts and limits buckets are its own, declared by their packages).
var Needs = broker.Needs{Writes: []string{broker.StreamEvents}}

// Service is the auth daemon.
type Service struct {
	Config *config.Config
	Broker *broker.Broker
	Log    zerolog.Logger
	// Metrics counts sign-ins, password changes and lockouts (nil:
	// nothing is counted).
	Metrics *metrics.Metrics
	// Ready, when set, receives the listening address once requests are
	// accepted.
	Ready func(addr string)
}

// CheckConfig reports what is wrong with cfg's auth section, for the
// daemon to refuse it before it connects to the broker (daemon.Check).
func CheckConfig(cfg *config.Config) error {
	_, err := authconfig.Load(cfg)
	return err
}

// Run serves sign-ins and password changes until ctx ends.
func (s *Service) Run(ctx context.Context) error {
	ap, err := authconfig.Load(s.Config)
	if err != nil {
		return &command.ConfigError{Err: err}
	}
	a := *ap
	if !a.Configured() {
		return ErrNotConfigured
	}
	needs := Needs
	var key *sourcecred.Key
	if a.SourceCredentials.Enabled() {
		// Refused here, before any sign-in: a key others may read.
		if key, err = sourcecred.LoadKey(a.SourceCredentials.KeyFile); err != nil {
			return &command.ConfigError{Err: fmt.Errorf("%s.source_credentials: %w", authconfig.Section, err)}
		}
		needs.Writes = append(slices.Clip(needs.Writes), broker.BucketSourceCredentials)
	}
	if a.LegacyIMAP.Address != "" {
		// The legacy server's refusals count with the migration's.
		needs.Writes = append(slices.Clip(needs.Writes), broker.BucketLoginFailures)
	}
	if err := s.Broker.Await(ctx, s.Log, needs); err != nil {
		return err
	}
	for name, check := range peerChecks(a) {
		s.Metrics.AddReady(name, metrics.Probe(metrics.ProbeEvery, check))
	}
	target, err := NewAdapter(a)
	if err != nil {
		return err
	}
	store, err := Accounts(ctx, s.Config, s.Broker)
	if err != nil {
		return err
	}
	limits, err := Limits(ctx, s.Config, s.Broker)
	if err != nil {
		return err
	}
	pol := Policy(a)
	opts := signin.Options{
		Accounts: store,
		Limits:   limits,
		Target:   target,
		Policy:   pol,
		Argon2:   signin.Argon2FromConfig(a.Argon2),
		Events:   event.Publisher{JS: s.Broker.JS, Service: ServiceName},
		Log:      s.Log,
		Metrics:  s.Metrics,
	}
	if a.LegacyIMAP.Address != "" {
		opts.Legacy = &limitedLogins{
			LegacyVerifier: legacyimap.New(a.LegacyIMAP),
			guard:          loginlimit.New(s.Broker.LoginFailures, "source", a.LegacyIMAP.MaxLoginFailures, nil),
			locks:          &keylock.Locks{},
			log:            s.Log,
		}
	}
	if key != nil {
		kv, err := s.Broker.JS.KeyValue(ctx, broker.BucketSourceCredentials)
		if err != nil {
			return fmt.Errorf("bind bucket %s: %w", broker.BucketSourceCredentials, s.Broker.Explain(err))
		}
		if opts.Legacy != nil {
			// The mailboxes this hands off are proven at the legacy
			// server with their source login.
			opts.Legacy = sourceLogins{LegacyVerifier: opts.Legacy, mailboxes: s.Config.Mailboxes.File}
		}
		opts.HandOff = &sourceHandOff{mailboxes: s.Config.Mailboxes.File, store: &sourcecred.Store{KV: kv, Key: key},
			js: s.Broker.JS, events: opts.Events, log: s.Log}
	}
	proxies, err := authconfig.ParsePrefixes(a.TrustedProxies)
	if err != nil {
		return fmt.Errorf("auth.trusted_proxies: %w", err)
	}
	front := &web.Server{
		Auth:           signin.New(opts),
		PolicyText:     pol.Describe(),
		Log:            s.Log,
		TrustedProxies: proxies,
		Secure:         a.TLS.Enabled() || a.AllowPlaintext,
		RequestTimeout: a.RequestTimeout.Std(),
	}
	ln, err := web.Listen(a)
	if err != nil {
		return err
	}
	s.Log.Info().Str("listen", ln.Addr().String()).Bool("tls", a.TLS.Enabled()).Str("provider", target.Name()).
		Bool("legacy_imap", opts.Legacy != nil).Bool("source_credentials", opts.HandOff != nil).Msg("auth service listening")
	if s.Ready != nil {
		s.Ready(ln.Addr().String())
	}
	return web.Serve(ctx, ln, front.Handler(), a.RequestTimeout.Std())
}

// peerChecks are the daemon's readiness checks of its peers: the
// provider's API (or the directory of the passwd-file the target
// Dovecot reads) and the legacy IMAP server that verifies passwords.
func peerChecks(a authconfig.Auth) map[string]func(context.Context) error {
	checks := map[string]func(context.Context) error{}
	switch a.Provider {
	case authconfig.ProviderOpenSRS:
		if u, err := url.Parse(a.OpenSRS.URL); err == nil && u.Host != "" {
			host := u.Host
			if u.Port() == "" {
				port := "443"
				if u.Scheme == "http" {
					port = "80"
				}
				host = net.JoinHostPort(u.Hostname(), port)
			}
			checks["provider"] = metrics.Reachable(host, 5*time.Second)
		}
	case authconfig.ProviderDovecot:
		dir := filepath.Dir(a.Dovecot.PasswdFile)
		checks["provider"] = func(context.Context) error {
			if st, err := os.Stat(dir); err != nil || !st.IsDir() {
				return fmt.Errorf("the passwd-file's directory %s is not there", dir)
			}
			return nil
		}
	}
	if a.LegacyIMAP.Address != "" {
		checks["legacy imap"] = metrics.Reachable(a.LegacyIMAP.Address, 5*time.Second)
	}
	return checks
}
