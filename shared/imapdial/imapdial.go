// Package imapdial is the one way mailferry connects to an IMAP server:
// it dials, sets up TLS as configured (verified by default; implicit TLS,
// STARTTLS or, by explicit opt-in, none), reads the greeting and the
// capabilities, and logs in, either as a master user (SASL PLAIN with an
// authorization identity) or with the user's own password. It also holds
// the one watchdog that fails a command on a stalled server.
//
// The handshake is written once, on the wire (Conn). go-imap users (the
// extractor, the loader's folder and scan commands, verify) get the
// logged-in connection as an *imapclient.Client (Dial); imapappend, which
// pipelines APPENDs with its own protocol code, and the auth service's
// legacy login check, which sends ID before its own LOGIN, work on the
// Conn itself.
package imapdial

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"

	"github.com/emersion/go-imap/v2/imapclient"

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
	if s.Auth == config.AuthToken {
		// Tokens are minted and kept by the loader (services/loader
		// tokens.go); no file holds them.
		return Credentials{}, fmt.Errorf("%s auth token: logins with OpenSRS tokens are the loader's; use master or user here", side)
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

// Dial connects to s and logs in with cred (see DialConn), and hands the
// logged-in connection to a go-imap client. opts may be nil.
func Dial(ctx context.Context, s config.IMAP, cred Credentials, opts *imapclient.Options) (*imapclient.Client, error) {
	return DialObserved(ctx, s, cred, opts, nil)
}

// DialObserved is Dial with obs (nil: none) timing the connection's
// commands and told how the dial ended.
func DialObserved(ctx context.Context, s config.IMAP, cred Credentials, opts *imapclient.Options, obs Observer) (*imapclient.Client, error) {
	return DialGuarded(ctx, s, cred, opts, obs, nil)
}

// DialGuarded is DialObserved with guard (nil: none) asked before the
// login and told of a refusal (Options.Guard).
func DialGuarded(ctx context.Context, s config.IMAP, cred Credentials, opts *imapclient.Options, obs Observer, guard LoginGuard) (*imapclient.Client, error) {
	c, err := dialServer(ctx, s, cred, obs, guard)
	if err != nil {
		return nil, err
	}
	return c.Client(opts), nil
}

// dialServer connects to s and logs in with cred (DialConn), timed by obs
// and limited by guard (nil: none).
func dialServer(ctx context.Context, s config.IMAP, cred Credentials, obs Observer, guard LoginGuard) (*Conn, error) {
	if s.Address == "" {
		return nil, errors.New("no server address configured")
	}
	o, err := OptionsFor(s)
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", s.Address, err)
	}
	o.Observer, o.Guard = obs, guard
	return DialConn(ctx, o, cred)
}

// Client hands the logged-in connection to a go-imap client, which then
// owns it: the Conn must not be used any more. go-imap is told of the
// login by a PREAUTH greeting carrying the capabilities, as a server that
// logged the client in itself would send, so one handshake (ours) serves
// the go-imap users and the raw-protocol users alike. opts may be nil.
func (c *Conn) Client(opts *imapclient.Options) *imapclient.Client {
	greeting := "* PREAUTH mailferry: logged in\r\n"
	if len(c.caps) > 0 {
		greeting = "* PREAUTH [CAPABILITY " + strings.Join(c.caps, " ") + "] mailferry: logged in\r\n"
	}
	cl := imapclient.New(&handover{Conn: c.conn, greeting: strings.NewReader(greeting), br: c.br}, opts)
	// The greeting comes from memory and cannot fail; waiting for it
	// makes the client's state authenticated before anyone asks.
	_ = cl.WaitGreeting()
	return cl
}
