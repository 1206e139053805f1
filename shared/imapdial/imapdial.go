// Package imapdial opens authenticated go-imap clients to the source and
// target servers as configured: TLS verified by default, implicit TLS,
// STARTTLS or (by explicit opt-in) none, and either a master login (SASL
// PLAIN with an authorization identity) or the user's own password.
package imapdial

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-sasl"

	"github.com/mailferry/mailferry/shared/config"
)

// Credentials say whom to log in as. With a master user, the server
// authenticates MasterUser and authorizes User (Dovecot master users,
// imapsync's --authuser1); otherwise User logs in with Password.
type Credentials struct {
	User           string
	Password       string
	MasterUser     string
	MasterPassword string
}

// String never shows a password.
func (c Credentials) String() string {
	if c.MasterUser != "" {
		return c.User + " (via " + c.MasterUser + ")"
	}
	return c.User
}

// CredentialsFor resolves how to log in to side ("source" or "target") as
// user: the master password from the configuration, or the user's password
// from passwordFile.
func CredentialsFor(c *config.Config, side, user, passwordFile string) (Credentials, error) {
	s := c.Source
	if side == "target" {
		s = c.Target
	}
	if s.Auth == config.AuthMaster {
		pw, err := c.MasterPassword(side)
		if err != nil {
			return Credentials{}, fmt.Errorf("%s master password: %w", side, err)
		}
		return Credentials{User: user, MasterUser: s.MasterUser, MasterPassword: pw}, nil
	}
	pw, err := config.Secret("", passwordFile)
	if err != nil {
		return Credentials{}, fmt.Errorf("%s password of %s: %w", side, user, err)
	}
	return Credentials{User: user, Password: pw}, nil
}

// TLSConfig builds the client TLS configuration of s.
func TLSConfig(s config.IMAP) (*tls.Config, error) {
	host, _, err := net.SplitHostPort(s.Address)
	if err != nil {
		return nil, fmt.Errorf("address %q: %w", s.Address, err)
	}
	tc := &tls.Config{ServerName: host, MinVersion: tls.VersionTLS12, InsecureSkipVerify: s.InsecureSkipVerify}
	if s.ServerName != "" {
		tc.ServerName = s.ServerName
	}
	if s.CAFile != "" {
		pem, err := os.ReadFile(s.CAFile)
		if err != nil {
			return nil, fmt.Errorf("ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("ca_file %s: no PEM certificates", s.CAFile)
		}
		tc.RootCAs = pool
	}
	return tc, nil
}

// Dial connects to s and logs in with cred. opts may be nil.
func Dial(ctx context.Context, s config.IMAP, cred Credentials, opts *imapclient.Options) (*imapclient.Client, error) {
	if s.Address == "" {
		return nil, errors.New("no server address configured")
	}
	c, conn, err := connect(ctx, s, opts)
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", s.Address, err)
	}
	// A server that stalls during login fails the dial like one that
	// does not answer the connect.
	wd := Watch(ctx, c, s.DialTimeout.Std())
	defer wd.Stop()
	if err := login(c, cred); err != nil {
		c.Close()
		if refused(err) {
			err = errors.Join(err, ErrLoginRefused)
		}
		return nil, fmt.Errorf("log in to %s as %s: %w", s.Address, cred, wd.Err(err))
	}
	if ctx.Err() != nil {
		c.Close()
		return nil, ctx.Err()
	}
	// Past the handshake, commands have their own watchdogs.
	_ = conn.SetDeadline(time.Time{})
	return c, nil
}

// connect dials s and reads the greeting (after TLS or STARTTLS as
// configured). The whole handshake must finish within DialTimeout; the
// deadline stays on the returned connection until the caller clears it.
func connect(ctx context.Context, s config.IMAP, opts *imapclient.Options) (*imapclient.Client, net.Conn, error) {
	o := imapclient.Options{}
	if opts != nil {
		o = *opts
	}
	d := &net.Dialer{Timeout: s.DialTimeout.Std(), KeepAlive: 30 * time.Second}
	conn, err := d.DialContext(ctx, "tcp", s.Address)
	if err != nil {
		return nil, nil, err
	}
	if s.DialTimeout > 0 {
		_ = conn.SetDeadline(time.Now().Add(s.DialTimeout.Std()))
	}
	switch s.TLS {
	case config.TLSNone:
		c := imapclient.New(conn, &o)
		return c, conn, greet(ctx, c)
	case config.TLSStartTLS:
		if o.TLSConfig, err = TLSConfig(s); err != nil {
			conn.Close()
			return nil, nil, err
		}
		c, err := imapclient.NewStartTLS(conn, &o)
		return c, conn, err
	case config.TLSImplicit:
		if o.TLSConfig, err = TLSConfig(s); err != nil {
			conn.Close()
			return nil, nil, err
		}
		tc := tls.Client(conn, o.TLSConfig)
		if err := tc.HandshakeContext(ctx); err != nil {
			conn.Close()
			return nil, nil, fmt.Errorf("tls handshake: %w", err)
		}
		c := imapclient.New(tc, &o)
		return c, conn, greet(ctx, c)
	}
	conn.Close()
	return nil, nil, fmt.Errorf("tls mode %q unknown", s.TLS)
}

func greet(ctx context.Context, c *imapclient.Client) error {
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	if err := c.WaitGreeting(); err != nil {
		c.Close()
		return fmt.Errorf("greeting: %w", err)
	}
	return nil
}

// ErrLoginRefused marks a login the server refused for the credentials;
// retrying the same credentials cannot help.
var ErrLoginRefused = errors.New("login refused")

func refused(err error) bool {
	var ie *imap.Error
	if !errors.As(err, &ie) {
		return false
	}
	switch ie.Code {
	case imap.ResponseCodeAuthenticationFailed, imap.ResponseCodeAuthorizationFailed, imap.ResponseCodeExpired:
		return true
	}
	return false
}

func login(c *imapclient.Client, cred Credentials) error {
	if cred.MasterUser != "" {
		if !c.Caps().Has(imap.AuthCap(sasl.Plain)) {
			// Dovecot also accepts "user*master" as a LOGIN name, but
			// only SASL PLAIN is a standard way to name the authzid.
			return errors.New("server does not offer AUTH=PLAIN for a master login")
		}
		return c.Authenticate(sasl.NewPlainClient(cred.User, cred.MasterUser, cred.MasterPassword))
	}
	if c.Caps().Has(imap.CapLoginDisabled) {
		return errors.New("server has LOGINDISABLED: use TLS")
	}
	return c.Login(cred.User, cred.Password).Wait()
}

// Abort closes c's connection without waiting for its reader goroutine,
// which may be parked until the literal in hand is read. The caller then
// drains the command in hand (its reads fail at once) or, when a literal
// read already failed, leaves it alone: go-imap would read that literal
// again, racing with its own reader.
func Abort(c *imapclient.Client) {
	go c.Close() // returns once the reader has seen the closed connection
}

// Watchdog closes a client when it makes no progress for a while or when
// its context ends, so a stalled server fails a command instead of
// hanging it. Kick it on every unit of progress; Stop it when done.
type Watchdog struct {
	mu    sync.Mutex
	timer *time.Timer
	d     time.Duration
	fired bool
	stop  func() bool
}

// Watch starts a watchdog over c with idle timeout d.
func Watch(ctx context.Context, c *imapclient.Client, d time.Duration) *Watchdog {
	w := &Watchdog{d: d}
	w.timer = time.AfterFunc(d, func() {
		w.mu.Lock()
		w.fired = true
		w.mu.Unlock()
		c.Close()
	})
	w.stop = context.AfterFunc(ctx, func() { c.Close() })
	return w
}

// Kick records progress.
func (w *Watchdog) Kick() { w.timer.Reset(w.d) }

// Stop ends the watch; it reports whether the watchdog had closed the
// client for want of progress.
func (w *Watchdog) Stop() (timedOut bool) {
	w.timer.Stop()
	w.stop()
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.fired
}

// Err turns an error from a watched command into one that says why.
func (w *Watchdog) Err(err error) error {
	if err == nil {
		return nil
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.fired {
		return fmt.Errorf("no progress for %s, connection closed: %w", w.d, err)
	}
	return err
}
