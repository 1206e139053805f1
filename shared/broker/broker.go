// Package broker connects a mailferry service to NATS JetStream, starting an
// embedded nats-server when no URL is configured, and declares the streams,
// key-value buckets and object store the services share.
//
// Each resource has an owner, the service that writes it: only a writer
// declares a resource (creates it, or updates it to its settings), and a
// process that only reads one binds to it as its owner made it. So the
// mail stream's limits come from the extractor's file alone, and a loader
// or dnsctl file that says otherwise changes nothing. The all-in-one
// runners (migrate, nats) and tests declare everything (Open, DeclareAll).
package broker

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/mailferry/mailferry/shared/config"
)

// Names of the streams, buckets and object store.
const (
	StreamMail   = "MF_MAIL"
	StreamJobs   = "MF_JOBS"
	StreamEvents = "MF_EVENTS"
	StreamDead   = "MF_DEAD"

	BucketCheckpoints = "mf_checkpoints"
	BucketLedger      = "mf_ledger"
	BucketProgress    = "mf_progress"
	StoreBodies       = "mf_bodies"
)

// publishAckTimeout bounds the wait for the acknowledgement of an
// asynchronous publish. A node of a cluster that dies between taking a
// message and answering leaves no one to answer; in a healthy cluster an
// acknowledgement takes milliseconds.
const publishAckTimeout = 15 * time.Second

// Broker is a connection to JetStream with the shared resources declared.
type Broker struct {
	Conn *nats.Conn
	JS   jetstream.JetStream

	Checkpoints   jetstream.KeyValue
	Ledger        jetstream.KeyValue
	Progress      jetstream.KeyValue
	LoginFailures jetstream.KeyValue
	Bodies        jetstream.ObjectStore

	cfg      config.NATS
	embedded *server.Server
	// lock holds the embedded server's data directory.
	lock *os.File
	// all is set once DeclareAll has declared everything with cfg: Use
	// and Await then have nothing left to declare.
	all bool
	// refused is the server's last permissions violation (refused.go),
	// refusals when each was last logged at error.
	refused    atomic.Pointer[refusal]
	refusalsMu sync.Mutex
	refusals   map[string]time.Time
}

// Open connects as client name (or starts the embedded server) and declares
// every stream, bucket and store idempotently, with cfg's settings: the way
// of the all-in-one runners (migrate, nats) and of tests, which own
// everything. A service connects with Connect and declares what it writes
// with Use or Await.
func Open(ctx context.Context, cfg config.NATS, name string, log zerolog.Logger) (*Broker, error) {
	b, err := Connect(ctx, cfg, name, log)
	if err != nil {
		return nil, err
	}
	if err := b.DeclareAll(ctx); err != nil {
		b.Close()
		return nil, err
	}
	return b, nil
}

// Connect connects as client name (or starts the embedded server) and
// declares and binds nothing: the handles (Checkpoints, Ledger, Progress,
// Bodies) are set by Use, Await or DeclareAll.
func Connect(ctx context.Context, cfg config.NATS, name string, log zerolog.Logger) (*Broker, error) {
	b := &Broker{cfg: cfg}
	opts := []nats.Option{
		nats.Name(name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(200 * time.Millisecond),
		nats.ReconnectJitter(100*time.Millisecond, time.Second),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil { // nil is our own Close
				log.Warn().Err(err).Msg("nats disconnected")
			}
		}),
		nats.ReconnectHandler(func(c *nats.Conn) {
			log.Info().Str("url", c.ConnectedUrlRedacted()).Msg("nats reconnected")
		}),
		// Without a handler nats.go prints asynchronous errors to stderr.
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			b.asyncError(log, sub, err)
		}),
	}
	if cfg.InboxPrefix != "" {
		opts = append(opts, nats.CustomInboxPrefix(cfg.InboxPrefix))
	}
	url := cfg.URL
	if url == "" {
		if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
			return nil, fmt.Errorf("embedded nats data dir: %w", err)
		}
		lock, err := lockDataDir(cfg.DataDir)
		if err != nil {
			return nil, err
		}
		srv, user, pw, err := startEmbedded(cfg, log)
		if err != nil {
			lock.Close()
			return nil, err
		}
		b.embedded, b.lock = srv, lock
		// In-process even when listening: no TLS to trust for
		// ourselves, and the password still applies.
		opts = append(opts, nats.InProcessServer(srv))
		if user != "" {
			opts = append(opts, nats.UserInfo(user, pw))
		}
		if cfg.ListenCertFile != "" {
			pin, err := pinOwnCertificate(cfg)
			if err != nil {
				srv.Shutdown()
				return nil, err
			}
			opts = append(opts, nats.Secure(pin))
		}
		url = srv.ClientURL()
	} else {
		tlsOpts, err := clientTLS(cfg)
		if err != nil {
			return nil, err
		}
		opts = append(opts, tlsOpts...)
		user, pw, ok, err := clientCredentials(cfg)
		if err != nil {
			return nil, err
		}
		if ok {
			opts = append(opts, nats.UserInfo(user, pw))
		}
	}
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		b.Close()
		return nil, fmt.Errorf("connect to nats: %w", err)
	}
	b.Conn = nc
	// An acknowledgement a dying stream leader never sent would otherwise
	// be waited for forever: after publishAckTimeout the publisher's
	// future fails, and the extractor publishes again (the broker drops
	// a duplicate by its Nats-Msg-Id).
	if b.JS, err = jetstream.New(nc, jetstream.WithPublishAsyncTimeout(publishAckTimeout)); err != nil {
		b.Close()
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	return b, nil
}

// clientTLS is how a client signs in other than with a password (a creds
// or NKey seed file) and the TLS it uses.
func clientTLS(cfg config.NATS) ([]nats.Option, error) {
	var opts []nats.Option
	if cfg.CredsFile != "" {
		// nats.go reads it on every connect; refuse it once here when
		// others may read it.
		if _, err := config.ReadSecretFile(cfg.CredsFile); err != nil {
			return nil, fmt.Errorf("nats.creds_file: %w", err)
		}
		opts = append(opts, nats.UserCredentials(cfg.CredsFile))
	}
	if cfg.NKeyFile != "" {
		o, err := nkeyOption(cfg.NKeyFile)
		if err != nil {
			return nil, err
		}
		opts = append(opts, o)
	}
	if cfg.CAFile != "" {
		opts = append(opts, nats.RootCAs(cfg.CAFile))
	}
	if cfg.CertFile != "" || cfg.KeyFile != "" {
		if _, err := config.ReadSecretFile(cfg.KeyFile); err != nil {
			return nil, fmt.Errorf("nats.key_file: %w", err)
		}
		opts = append(opts, nats.ClientCert(cfg.CertFile, cfg.KeyFile))
	}
	return opts, nil
}

// startEmbedded starts the in-process server; when it listens, it returns
// the user and password it requires.
func startEmbedded(cfg config.NATS, log zerolog.Logger) (srv *server.Server, user, password string, err error) {
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, "", "", fmt.Errorf("embedded nats data dir: %w", err)
	}
	opts := &server.Options{
		ServerName: cfg.ServerName,
		JetStream:  true,
		StoreDir:   cfg.DataDir,
		DontListen: cfg.Listen == "",
		NoSigs:     true,
		SyncAlways: cfg.SyncAlways,
		// The server's own default; large bodies go to the object store.
		MaxPayload: 1 << 20,
	}
	if cfg.Listen != "" {
		host, port, err := net.SplitHostPort(cfg.Listen)
		if err != nil {
			return nil, "", "", fmt.Errorf("nats.listen %q: %w", cfg.Listen, err)
		}
		p, err := strconv.Atoi(port)
		if err != nil {
			return nil, "", "", fmt.Errorf("nats.listen %q: %w", cfg.Listen, err)
		}
		opts.Host, opts.Port = host, p
		if err := secureListener(opts, cfg, log); err != nil {
			return nil, "", "", err
		}
	}
	srv, err = server.NewServer(opts)
	if err != nil {
		return nil, "", "", fmt.Errorf("embedded nats: %w", err)
	}
	srv.Start()
	if !srv.ReadyForConnections(30 * time.Second) {
		srv.Shutdown()
		return nil, "", "", errors.New("embedded nats: not ready after 30s")
	}
	log.Info().Str("data_dir", cfg.DataDir).Str("listen", cfg.Listen).Bool("tls", opts.TLS).Msg("embedded nats started")
	return srv, opts.Username, opts.Password, nil
}

// Embedded reports whether this broker runs the server in-process.
func (b *Broker) Embedded() bool { return b.embedded != nil }

// Private reports whether this process is the only possible client: the
// server runs in-process and listens on no port. State that only live
// sessions may hold (a mailbox's lease) can then be taken from the dead.
func (b *Broker) Private() bool { return b.embedded != nil && b.cfg.Listen == "" }

// ClientURL returns the URL other processes can use to reach the embedded
// server (empty when it does not listen).
func (b *Broker) ClientURL() string {
	if b.embedded == nil || b.cfg.Listen == "" {
		return ""
	}
	return b.embedded.ClientURL()
}

// Close drains the connection and stops an embedded server.
func (b *Broker) Close() {
	if b.Conn != nil {
		_ = b.Conn.Drain()
		deadline := time.Now().Add(5 * time.Second)
		for !b.Conn.IsClosed() && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		b.Conn.Close()
	}
	if b.embedded != nil {
		b.embedded.Shutdown()
		b.embedded.WaitForShutdown()
	}
	if b.lock != nil {
		b.lock.Close()
	}
}
