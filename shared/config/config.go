// Package config loads mailferry's YAML configuration: one file with a
// section per service, overridable from the environment, with secrets read
// from files or environment variables and never from the command line.
//
// It decodes what every service shares (nats, source, target, mailboxes,
// log) and keeps the sections the services own (extractor, loader, dns,
// auth) as raw YAML: each owner decodes its own with Section, so its
// types, defaults and checks live with the code that uses them.
package config

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// EnvPrefix starts every environment override: MAILFERRY_SOURCE_ADDRESS
// overrides source.address, MAILFERRY_NATS_URL overrides nats.url.
const EnvPrefix = "MAILFERRY_"

// Config is the whole configuration file.
type Config struct {
	NATS      NATS      `yaml:"nats"`
	Source    IMAP      `yaml:"source"`
	Target    IMAP      `yaml:"target"`
	Mailboxes Mailboxes `yaml:"mailboxes"`
	Log       Log       `yaml:"log"`
	// MemoryLimit is the soft limit of this process's Go heap
	// (runtime/debug.SetMemoryLimit): the collector works harder as the
	// heap nears it and returns freed memory to the system. 0 leaves the
	// process its default (shared/daemon: 192 MiB with the embedded
	// server, 48 MiB for the extractor and the loader, none otherwise),
	// -1 sets none. GOMEMLIMIT in the environment wins.
	MemoryLimit int64 `yaml:"memory_limit"`

	// Dir is the directory of the configuration file; relative paths in
	// it are resolved against Dir.
	Dir string `yaml:"-"`

	// raw is the file, kept for Section; env the environment Parse got.
	raw []byte
	env []string
}

// ownedSections are the top-level sections whose owners decode them with
// Section: extractor and loader (services/extractor, services/loader), dns
// (dnsctl), auth (the auth service), cutover (the campaign orchestrator,
// cmd/mailferry/cutover), dashboard (cmd/mailferry/dashboard) and metrics
// (shared/metrics, for every daemon). Parse accepts them without looking
// inside; an unknown key in one is reported by its owner. A new service
// with a section of its own adds its name here.
var ownedSections = []string{"extractor", "loader", "dns", "auth", "cutover", "dashboard", "metrics"}

// NATS says how to reach the broker.
type NATS struct {
	// URL of a NATS server or cluster (comma-separated). Empty starts an
	// embedded nats-server with JetStream on DataDir.
	URL     string `yaml:"url"`
	DataDir string `yaml:"data_dir"`
	// CredsFile (a JWT and its NKey seed, for an operator-mode server) or
	// NKeyFile (an NKey seed: a user of the server's authorization block
	// named by its public key) authenticate instead of User and
	// PasswordFile. Both are secrets: mode 0600.
	CredsFile string `yaml:"creds_file"`
	NKeyFile  string `yaml:"nkey_file"`
	// CAFile, CertFile and KeyFile configure TLS to a remote server.
	CAFile   string `yaml:"ca_file"`
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// Replicas of every stream and bucket (1 on a single server).
	Replicas int `yaml:"replicas"`
	// MailMaxAge and MailMaxBytes bound the mail stream, which keeps
	// records after they are loaded so a mailbox can be replayed. Only
	// the process that declares the stream reads them: the extractor, or
	// the all-in-one migrate and nats runners (see deploy/README.md).
	MailMaxAge   Duration `yaml:"mail_max_age"`
	MailMaxBytes int64    `yaml:"mail_max_bytes"`
	// DedupWindow is the broker's duplicate window for Nats-Msg-Id.
	DedupWindow Duration `yaml:"dedup_window"`
	// MaxPendingBytes bounds the bytes an extractor process has published
	// but not yet had acknowledged, shared by the mailboxes it extracts at
	// once (default 16 MiB: the broker's acknowledgements keep up long
	// before, and every byte of it is the extractor's memory).
	MaxPendingBytes int64 `yaml:"max_pending_bytes"`
	// ServerName of the embedded server; keep it stable across restarts.
	ServerName string `yaml:"server_name"`
	// Listen, when set, makes the embedded server accept clients there
	// (so other processes can attach); otherwise it is in-process only.
	// A listening server always requires a password (see User), and one
	// on a non-loopback address also TLS (ListenCertFile, ListenKeyFile).
	Listen         string `yaml:"listen"`
	ListenCertFile string `yaml:"listen_cert_file"`
	ListenKeyFile  string `yaml:"listen_key_file"`
	// User and PasswordFile are the broker credentials: the embedded
	// server requires them of its clients, a client sends them. With
	// neither set, a listening embedded server makes its own on first
	// start (user "mailferry", password in DataDir/broker.password, mode
	// 0600), and a client whose DataDir holds that file uses it.
	// MAILFERRY_NATS_PASSWORD overrides the file.
	User         string `yaml:"user"`
	PasswordFile string `yaml:"password_file"`
	// InboxPrefix is where the broker's replies to this process come:
	// _INBOX.<user> when User is set, _INBOX otherwise. A server whose
	// users may subscribe only to their own replies (deploy/nats/
	// users.conf) needs it; set it for a creds_file or nkey_file user.
	InboxPrefix string `yaml:"inbox_prefix"`
	// JobAckWait is how long a job stays with a worker that stopped
	// answering (a killed process) before another worker gets it.
	JobAckWait Duration `yaml:"job_ack_wait"`
	// SourceCredentialTTL is how long a source password a user proved at
	// sign-in (the mf_source_credentials bucket, shared/sourcecred) is
	// kept at most when nothing deletes it sooner (default 72h). Only the
	// process that declares the bucket reads it: the auth service, or the
	// all-in-one migrate and nats runners.
	SourceCredentialTTL Duration `yaml:"source_credential_ttl"`
	// SyncAlways makes the embedded server fsync every write (for hosts
	// that may lose power, not only processes that may die).
	SyncAlways bool `yaml:"sync_always"`

	// mailSet records that the file or the environment set MailMaxAge or
	// MailMaxBytes, before defaults filled them in.
	mailSet bool
}

// SetsMailStream reports whether the file or the environment set
// mail_max_age or mail_max_bytes, which a process that does not declare
// the mail stream ignores (and says so).
func (n NATS) SetsMailStream() bool { return n.mailSet }

// IMAP describes one IMAP server and how mailferry logs in to it.
type IMAP struct {
	Address string `yaml:"address"`
	// TLS is none, starttls or implicit.
	TLS                string `yaml:"tls"`
	InsecureSkipVerify bool   `yaml:"insecure_skip_verify"`
	CAFile             string `yaml:"ca_file"`
	ServerName         string `yaml:"server_name"`
	// Auth is master (SASL PLAIN with authzid), user (the password in the
	// mailbox's password file) or, for the target only, token (a login
	// token per mailbox minted through OpenSRS's OMA: see OpenSRS).
	Auth               string `yaml:"auth"`
	MasterUser         string `yaml:"master_user"`
	MasterPasswordFile string `yaml:"master_password_file"`
	// OpenSRS is where a target with auth token gets its tokens.
	OpenSRS OMA `yaml:"opensrs"`
	// Connections bounds concurrent connections to this server: the
	// extractor uses one per mailbox, the loader two.
	Connections    int      `yaml:"connections"`
	CommandTimeout Duration `yaml:"command_timeout"`
	DialTimeout    Duration `yaml:"dial_timeout"`
	// MaxLoginFailures is how many refused logins of one mailbox in an
	// hour mailferry makes at most, over every process (default 1): a
	// legacy server that locks an account after N failures must never
	// see mailferry reach N. Counted on the source; the target's own
	// logins are retried by their owners.
	MaxLoginFailures int `yaml:"max_login_failures"`
	// CredentialKeyFile (source only) is the operator's key (32 bytes:
	// raw, hex or base64; mode 0600 or 0400) that opens the source
	// passwords users proved at sign-in, for mailboxes without a
	// source_password_file (shared/sourcecred). Empty: such mailboxes
	// cannot be logged in to.
	CredentialKeyFile string `yaml:"credential_key_file"`
}

// TLS modes of IMAP.TLS.
const (
	TLSNone     = "none"
	TLSStartTLS = "starttls"
	TLSImplicit = "implicit"
)

// Auth modes of IMAP.Auth.
const (
	AuthMaster = "master"
	AuthUser   = "user"
	// AuthToken logs in as the mailbox's user with a session token of
	// OpenSRS's generate_token as the password (target only).
	AuthToken = "token"
)

// OMA is how the loader reaches the OpenSRS Mail API to mint login
// tokens (generate_token, type session) when the target's auth is token.
type OMA struct {
	// Cluster is the OpenSRS email cluster the mailboxes live on (test, a
	// or b): the OMA URL and, when target.address is empty, the IMAP host
	// follow from it (OpenSRSClusters). It must be the auth section's
	// opensrs.cluster.
	Cluster string `yaml:"cluster"`
	// URL is the OMA base URL; method names are appended to it. Empty:
	// the cluster's.
	URL string `yaml:"url"`
	// User and PasswordFile are the OMA credentials of an administrator
	// of the migrated domains (mode 0600: a secret).
	User         string `yaml:"user"`
	PasswordFile string `yaml:"password_file"`
	// CAFile adds trusted certificates (a private test endpoint).
	CAFile string `yaml:"ca_file"`
	// Client is sent as credentials.client, for OpenSRS's logs.
	Client  string   `yaml:"client"`
	Timeout Duration `yaml:"timeout"`
	// TokenHours is the lifetime asked for each token, 1 to 24 hours:
	// tokens are kept in a key-value bucket whose entries live 24 hours.
	TokenHours int `yaml:"token_hours"`
	// RenewBefore: a stored token with less than this left is replaced
	// by a fresh one before a login (default 1h, or a quarter of a
	// shorter lifetime).
	RenewBefore Duration `yaml:"renew_before"`
}

// Mailboxes names the inventory of mailboxes to migrate.
type Mailboxes struct {
	// File is a CSV with header source_user,target_user and optionally
	// source_password_file,target_password_file.
	File string `yaml:"file"`
}

// Log configures logging.
type Log struct {
	Level  string `yaml:"level"`
	Format string `yaml:"format"` // json | console
}

// Duration is a time.Duration written as "90s" or "24h" in YAML.
type Duration time.Duration

// UnmarshalYAML parses a Go duration string.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: duration %q: %w", n.Line, n.Value, err)
	}
	*d = Duration(v)
	return nil
}

// Std returns d as a time.Duration.
func (d Duration) Std() time.Duration { return time.Duration(d) }

// Load reads the file at path, applies environment overrides and defaults,
// resolves relative paths against the file's directory and validates.
func Load(path string) (*Config, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	c, err := Parse(raw, filepath.Dir(path), os.Environ())
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	return c, nil
}

// Parse is Load on bytes, with dir for relative paths and env as KEY=VALUE
// pairs.
func Parse(raw []byte, dir string, env []string) (*Config, error) {
	c := &Config{}
	if err := decodeStrict(raw, c, ""); err != nil {
		return nil, err
	}
	if err := applyEnv(reflect.ValueOf(c).Elem(), EnvPrefix, env); err != nil {
		return nil, err
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("config dir: %w", err)
	}
	c.Dir = abs
	c.raw, c.env = raw, env
	c.NATS.mailSet = c.NATS.MailMaxAge != 0 || c.NATS.MailMaxBytes != 0
	c.defaults()
	c.resolvePaths()
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *Config) defaults() {
	setDefault(&c.NATS.DataDir, "./var/nats")
	setDefault(&c.NATS.ServerName, "mailferry")
	if c.NATS.Replicas == 0 {
		c.NATS.Replicas = 1
	}
	if c.NATS.MailMaxAge == 0 {
		c.NATS.MailMaxAge = Duration(30 * 24 * time.Hour)
	}
	if c.NATS.MailMaxBytes == 0 {
		// No byte limit unless asked: a limit reserves that much of the
		// server's storage up front, more than a small disk has.
		c.NATS.MailMaxBytes = -1
	}
	if c.NATS.DedupWindow == 0 {
		c.NATS.DedupWindow = Duration(time.Hour)
	}
	if c.NATS.SourceCredentialTTL == 0 {
		c.NATS.SourceCredentialTTL = Duration(72 * time.Hour)
	}
	if c.NATS.JobAckWait == 0 {
		c.NATS.JobAckWait = Duration(time.Minute)
	}
	if c.NATS.MaxPendingBytes == 0 {
		c.NATS.MaxPendingBytes = 16 << 20
	}
	if c.NATS.InboxPrefix == "" && c.NATS.User != "" {
		c.NATS.InboxPrefix = "_INBOX." + c.NATS.User
	}
	for _, s := range []*IMAP{&c.Source, &c.Target} {
		setDefault(&s.TLS, TLSImplicit)
		setDefault(&s.Auth, AuthMaster)
		if s.Connections == 0 {
			s.Connections = 8
		}
		if s.CommandTimeout == 0 {
			s.CommandTimeout = Duration(5 * time.Minute)
		}
		if s.DialTimeout == 0 {
			s.DialTimeout = Duration(30 * time.Second)
		}
		if s.MaxLoginFailures == 0 {
			s.MaxLoginFailures = 1
		}
	}
	if o := &c.Target.OpenSRS; c.Target.Auth == AuthToken {
		if cl, ok := OpenSRSClusters[o.Cluster]; ok {
			setDefault(&o.URL, cl.URL)
			setDefault(&c.Target.Address, cl.IMAP)
		}
		setDefault(&o.Client, "mailferry")
		if o.Timeout == 0 {
			o.Timeout = Duration(30 * time.Second)
		}
		if o.TokenHours == 0 {
			o.TokenHours = 24
		}
		if o.RenewBefore == 0 {
			// An hour, or a quarter of a shorter lifetime.
			o.RenewBefore = Duration(min(time.Hour, time.Duration(o.TokenHours)*time.Hour/4))
		}
	}
	setDefault(&c.Log.Level, "info")
	setDefault(&c.Log.Format, "json")
}

func setDefault(p *string, v string) {
	if *p == "" {
		*p = v
	}
}

// Path resolves p against the configuration's directory.
func (c *Config) Path(p string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(c.Dir, p)
}

func (c *Config) resolvePaths() {
	for _, p := range []*string{
		&c.NATS.DataDir, &c.NATS.CredsFile, &c.NATS.NKeyFile, &c.NATS.CAFile, &c.NATS.CertFile, &c.NATS.KeyFile,
		&c.NATS.ListenCertFile, &c.NATS.ListenKeyFile, &c.NATS.PasswordFile,
		&c.Source.MasterPasswordFile, &c.Source.CAFile, &c.Source.CredentialKeyFile,
		&c.Target.MasterPasswordFile, &c.Target.CAFile,
		&c.Target.OpenSRS.PasswordFile, &c.Target.OpenSRS.CAFile,
		&c.Mailboxes.File,
	} {
		*p = c.Path(*p)
	}
}

// Validate reports the first inconsistency in c.
func (c *Config) Validate() error {
	for name, s := range map[string]*IMAP{"source": &c.Source, "target": &c.Target} {
		if s.Address == "" && s.Auth == AuthToken {
			if err := checkCluster(s.OpenSRS.Cluster, "", ""); err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
			return fmt.Errorf("%s: auth token needs an address or opensrs.cluster", name)
		}
		if s.Address == "" {
			// A service's own file may leave out the other side.
			continue
		}
		if name == "source" && s.Auth == AuthToken {
			return errors.New("source: auth token is for the target (OpenSRS): want master or user")
		}
		if name == "target" && s.CredentialKeyFile != "" {
			return errors.New("target: credential_key_file is for the source (passwords users proved at sign-in)")
		}
		if err := s.validate(); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
	}
	if err := c.NATS.validate(); err != nil {
		return err
	}
	if l := c.MemoryLimit; l != 0 && l != -1 && l < 32<<20 {
		return fmt.Errorf("memory_limit %d: want at least 32 MiB (33554432), 0 for the process's default or -1 for none", l)
	}
	switch c.Log.Format {
	case "json", "console":
	default:
		return fmt.Errorf("log.format %q: want json or console", c.Log.Format)
	}
	return nil
}

func (n *NATS) validate() error {
	set := 0
	for _, v := range []string{n.User, n.CredsFile, n.NKeyFile} {
		if v != "" {
			set++
		}
	}
	if set > 1 {
		return errors.New("nats: user, creds_file and nkey_file are three ways to sign in: set one")
	}
	if n.SourceCredentialTTL < Duration(time.Hour) {
		return fmt.Errorf("nats.source_credential_ttl %s: want at least 1h (a source password proved at sign-in must outlive the passes that use it)", n.SourceCredentialTTL.Std())
	}
	if p := n.InboxPrefix; p != "" && (strings.ContainsAny(p, "*> \t") || strings.HasSuffix(p, ".") || strings.HasPrefix(p, ".") || strings.Contains(p, "..")) {
		return fmt.Errorf("nats.inbox_prefix %q: want subject tokens separated by dots, without wildcards or spaces", p)
	}
	return nil
}

// Validate reports the first inconsistency in an IMAP endpoint; owners of
// sections holding one (auth's legacy_imap) check theirs with it.
func (s *IMAP) Validate() error { return s.validate() }

func (s *IMAP) validate() error {
	switch s.TLS {
	case TLSNone, TLSStartTLS, TLSImplicit:
	default:
		return fmt.Errorf("tls %q: want none, starttls or implicit", s.TLS)
	}
	switch s.Auth {
	case AuthMaster:
		if s.MasterUser == "" {
			return errors.New("auth master needs master_user")
		}
	case AuthUser:
	case AuthToken:
		if err := s.OpenSRS.validate(s.Address); err != nil {
			return fmt.Errorf("auth token: %w", err)
		}
	default:
		return fmt.Errorf("auth %q: want master, user or token", s.Auth)
	}
	if s.Connections < 1 {
		return fmt.Errorf("connections %d: want at least 1", s.Connections)
	}
	if s.MaxLoginFailures < 0 {
		return fmt.Errorf("max_login_failures %d: want at least 1 (a mailbox fails by name once its logins were refused that often in an hour; 0: the default, 1)", s.MaxLoginFailures)
	}
	return nil
}

func (o *OMA) validate(address string) error {
	if err := checkCluster(o.Cluster, o.URL, address); err != nil {
		return err
	}
	switch {
	case o.URL == "" || o.User == "" || o.PasswordFile == "":
		return errors.New("opensrs needs cluster (or url), user and password_file (the OMA administrator that mints login tokens)")
	case !strings.HasPrefix(o.URL, "https://"):
		return fmt.Errorf("opensrs.url %q: want https:// (the request carries the OMA password)", o.URL)
	case o.TokenHours < 1 || o.TokenHours > 24:
		return fmt.Errorf("opensrs.token_hours %d: want 1 to 24", o.TokenHours)
	case o.RenewBefore.Std() <= 0 || o.RenewBefore.Std() >= time.Duration(o.TokenHours)*time.Hour:
		return fmt.Errorf("opensrs.renew_before %s: want more than 0 and less than token_hours", o.RenewBefore.Std())
	}
	return nil
}

// OpenSRSPassword returns the password of the target's OMA administrator,
// read from target.opensrs.password_file.
func (c *Config) OpenSRSPassword() (string, error) {
	return Secret("", c.Target.OpenSRS.PasswordFile)
}

// MasterPassword returns the master password of an IMAP server, read from
// MAILFERRY_<SIDE>_MASTER_PASSWORD or from master_password_file.
func (c *Config) MasterPassword(side string) (string, error) {
	s := &c.Source
	if side == "target" {
		s = &c.Target
	}
	return Secret(EnvPrefix+strings.ToUpper(side)+"_MASTER_PASSWORD", s.MasterPasswordFile)
}

// Secret reads a secret from the environment variable env if it is set,
// else from file (trailing newline removed). The error never contains the
// secret.
func Secret(env, file string) (string, error) {
	if v, ok := os.LookupEnv(env); ok && v != "" {
		return v, nil
	}
	if file == "" {
		return "", fmt.Errorf("secret: neither %s nor a password file is set", env)
	}
	b, err := ReadSecretFile(file)
	if err != nil {
		return "", err
	}
	v := strings.TrimRight(string(b), "\r\n")
	if v == "" {
		return "", fmt.Errorf("secret: %s is empty", file)
	}
	return v, nil
}

// Loopback reports whether host (of a listen address) names only this
// machine: localhost or a loopback IP. Listeners beyond it need TLS.
func Loopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// MakeSecretFile writes a new random password (32 bytes, base64url) to
// path, mode 0600, refusing to replace a file there, and returns it: for
// a listener that makes its own credentials on first start.
func MakeSecretFile(path string) (string, error) {
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return "", fmt.Errorf("make password: %w", err)
	}
	pw := base64.RawURLEncoding.EncodeToString(raw)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", fmt.Errorf("write password: %w", err)
	}
	_, werr := f.WriteString(pw + "\n")
	if err := errors.Join(werr, f.Close()); err != nil {
		return "", fmt.Errorf("write password %s: %w", path, err)
	}
	return pw, nil
}
