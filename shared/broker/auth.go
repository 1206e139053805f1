package broker

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/rs/zerolog"

	"github.com/mailferry/mailferry/shared/config"
)

// The broker holds every password hash and drives DNS, so no listener of
// it goes without authentication: an embedded server that listens requires
// a user and password of every client, and one on an address other than
// loopback also requires TLS. In-process clients (no listener) need none.

// DefaultUser is the user of the credentials a listening embedded server
// makes for itself when none are configured.
const DefaultUser = "mailferry"

// PasswordFileName is where, under nats.data_dir, a listening embedded
// server keeps the password it made.
const PasswordFileName = "broker.password"

// passwordEnv overrides nats.password_file.
const passwordEnv = config.EnvPrefix + "NATS_PASSWORD"

// serverCredentials returns the user and password a listening embedded
// server requires: the configured ones, or those it made on its first
// start (kept in data_dir, mode 0600, so clients on this machine that
// share data_dir find them).
func serverCredentials(cfg config.NATS, log zerolog.Logger) (user, password string, err error) {
	if cfg.User != "" {
		pw, err := config.Secret(passwordEnv, cfg.PasswordFile)
		if err != nil {
			return "", "", fmt.Errorf("broker password of %s: %w", cfg.User, err)
		}
		return cfg.User, pw, nil
	}
	path := filepath.Join(cfg.DataDir, PasswordFileName)
	pw, err := readPassword(path)
	if err == nil {
		return DefaultUser, pw, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return "", "", err
	}
	if pw, err = config.MakeSecretFile(path); err != nil {
		return "", "", fmt.Errorf("broker %w", err)
	}
	log.Info().Str("user", DefaultUser).Str("password_file", path).Msg("broker credentials made: clients set nats.user and nats.password_file to them")
	return DefaultUser, pw, nil
}

// clientCredentials returns what a client sends to a server at nats.url:
// the configured user and password, or those a listening embedded server
// made in this configuration's data_dir; ok is false when there are none
// (a creds file or TLS client certificate may stand in).
func clientCredentials(cfg config.NATS) (user, password string, ok bool, err error) {
	if cfg.User != "" {
		pw, err := config.Secret(passwordEnv, cfg.PasswordFile)
		if err != nil {
			return "", "", false, fmt.Errorf("broker password of %s: %w", cfg.User, err)
		}
		return cfg.User, pw, true, nil
	}
	if cfg.DataDir == "" || cfg.CredsFile != "" || cfg.NKeyFile != "" {
		return "", "", false, nil
	}
	pw, err := readPassword(filepath.Join(cfg.DataDir, PasswordFileName))
	if errors.Is(err, fs.ErrNotExist) {
		return "", "", false, nil
	}
	if err != nil {
		return "", "", false, err
	}
	return DefaultUser, pw, true, nil
}

func readPassword(path string) (string, error) {
	b, err := config.ReadSecretFile(path)
	if err != nil {
		return "", err
	}
	pw := strings.TrimRight(string(b), "\r\n")
	if pw == "" {
		return "", fmt.Errorf("broker password file %s is empty", path)
	}
	return pw, nil
}

// secureListener sets up authentication (and TLS where needed) on the
// options of an embedded server that listens on cfg.Listen.
func secureListener(opts *server.Options, cfg config.NATS, log zerolog.Logger) error {
	user, pw, err := serverCredentials(cfg, log)
	if err != nil {
		return err
	}
	opts.Username, opts.Password = user, pw
	if cfg.ListenCertFile != "" || cfg.ListenKeyFile != "" {
		tc, err := server.GenTLSConfig(&server.TLSConfigOpts{CertFile: cfg.ListenCertFile, KeyFile: cfg.ListenKeyFile})
		if err != nil {
			return fmt.Errorf("nats.listen TLS: %w", err)
		}
		opts.TLSConfig, opts.TLS = tc, true
		return nil
	}
	if !config.Loopback(opts.Host) {
		return fmt.Errorf("nats.listen %s is not a loopback address: set nats.listen_cert_file and nats.listen_key_file (TLS), or listen on 127.0.0.1", cfg.Listen)
	}
	return nil
}

// pinOwnCertificate is the TLS configuration of this process's in-process
// connection to its own listening server: the pipe has no host name to
// verify, so the server must present exactly the certificate configured.
func pinOwnCertificate(cfg config.NATS) (*tls.Config, error) {
	pair, err := tls.LoadX509KeyPair(cfg.ListenCertFile, cfg.ListenKeyFile)
	if err != nil {
		return nil, fmt.Errorf("nats.listen TLS: %w", err)
	}
	own := pair.Certificate[0]
	return &tls.Config{
		MinVersion:         tls.VersionTLS12,
		InsecureSkipVerify: true, // replaced by the exact match below
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			if len(raw) == 0 || !bytes.Equal(raw[0], own) {
				return errors.New("in-process broker presented another certificate")
			}
			return nil
		},
	}, nil
}
