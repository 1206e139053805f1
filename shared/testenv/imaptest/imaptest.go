// Package imaptest serves go-imap's in-memory IMAP server on loopback and
// opens an embedded broker, for fast tests of the services. Real Dovecot
// servers (package dovecottest) prove the same behaviour end to end.
package imaptest

import (
	"context"
	"net"
	"testing"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-imap/v2/imapserver/imapmemserver"
	"github.com/rs/zerolog"

	"github.com/mailferry/mailferry/shared/broker"
	"github.com/mailferry/mailferry/shared/config"
)

// NewUser returns an in-memory user with an INBOX.
func NewUser(t testing.TB, name, password string) *imapmemserver.User {
	t.Helper()
	u := imapmemserver.NewUser(name, password)
	if err := u.Create("INBOX", nil); err != nil {
		t.Fatal(err)
	}
	return u
}

// Serve serves u on 127.0.0.1 with the given capabilities until the test
// ends and returns the address. wrap, when not nil, wraps every session
// (to make the server misbehave).
func Serve(t testing.TB, u *imapmemserver.User, caps imap.CapSet, wrap func(*imapmemserver.UserSession) imapserver.Session) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := imapserver.New(&imapserver.Options{
		NewSession: func(*imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
			s := imapmemserver.NewUserSession(u)
			if wrap != nil {
				return wrap(s), nil, nil
			}
			return s, nil, nil
		},
		Caps:         caps,
		InsecureAuth: true,
	})
	go srv.Serve(ln) //nolint:errcheck // ends with Close
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// Broker parses yaml as a configuration (relative paths against dir) and
// opens its broker, an embedded nats-server unless nats.url is set.
func Broker(t testing.TB, ctx context.Context, yaml, dir string) (*config.Config, *broker.Broker) {
	t.Helper()
	cfg, err := config.Parse([]byte(yaml), dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := broker.Open(ctx, cfg.NATS, "test", zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	return cfg, b
}
