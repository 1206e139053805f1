// Package authtest holds the fixtures the auth service's tests share: an
// embedded nats-server, configurations, IMAP logins against real Dovecot
// instances and a log sink that can be searched for secrets.
package authtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/mailferry/mailferry/services/auth/authconfig"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/mailferry/mailferry/shared/broker"
	"github.com/mailferry/mailferry/shared/config"
	"github.com/mailferry/mailferry/shared/event"
	"github.com/mailferry/mailferry/shared/testenv/chromium"
	"github.com/mailferry/mailferry/shared/testenv/dovecottest"
)

// Config parses yaml as a configuration file in a fresh directory whose
// NATS data lives in that directory too.
func Config(t testing.TB, yaml string) *config.Config {
	t.Helper()
	dir := t.TempDir()
	raw := fmt.Sprintf("nats: {data_dir: '%s'}\n%s", filepath.Join(dir, "nats"), yaml)
	c, err := config.Parse([]byte(raw), dir, nil)
	if err != nil {
		t.Fatalf("config: %v\n%s", err, raw)
	}
	return c
}

// Auth is c's auth section, loaded as the service loads it.
func Auth(t testing.TB, c *config.Config) authconfig.Auth {
	t.Helper()
	a, err := authconfig.Load(c)
	if err != nil {
		t.Fatalf("auth section: %v", err)
	}
	return *a
}

// SharedConfig is Config with an embedded nats-server that also listens
// on a free loopback port, so that a second process (a second auth
// instance in a test) can connect to it: see SecondBroker.
func SharedConfig(t testing.TB, yaml string) *config.Config {
	t.Helper()
	dir := t.TempDir()
	raw := fmt.Sprintf("nats: {data_dir: '%s', listen: '127.0.0.1:-1'}\n%s", filepath.Join(dir, "nats"), yaml)
	c, err := config.Parse([]byte(raw), dir, nil)
	if err != nil {
		t.Fatalf("config: %v\n%s", err, raw)
	}
	return c
}

// SecondBroker opens another connection to b's server (b must come from
// a SharedConfig), as another process would, closed after the test.
func SecondBroker(t testing.TB, c *config.Config, b *broker.Broker) *broker.Broker {
	t.Helper()
	nc := c.NATS
	nc.URL, nc.Listen = b.ClientURL(), ""
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b2, err := broker.Open(ctx, nc, "auth-test-2", zerolog.Nop())
	if err != nil {
		t.Fatalf("second broker: %v", err)
	}
	t.Cleanup(b2.Close)
	return b2
}

// Broker opens the configuration's embedded nats-server, closed after the
// test.
func Broker(t testing.TB, c *config.Config) *broker.Broker {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b, err := broker.Open(ctx, c.NATS, "auth-test", zerolog.Nop())
	if err != nil {
		t.Fatalf("broker: %v", err)
	}
	t.Cleanup(b.Close)
	return b
}

// Context is a context that ends with the test or after d.
func Context(t testing.TB, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// LogSink collects every log line of a test, to check later that no
// secret was written.
type LogSink struct {
	mu  sync.Mutex
	buf bytes.Buffer
	t   testing.TB
}

// NewLogSink returns a sink that also forwards lines to the test log.
func NewLogSink(t testing.TB) *LogSink { return &LogSink{t: t} }

// Write stores and forwards one log line.
func (s *LogSink) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.t.Logf("%s", bytes.TrimRight(p, "\n"))
	return s.buf.Write(p)
}

// Logger is a debug-level JSON logger into the sink.
func (s *LogSink) Logger() zerolog.Logger {
	return zerolog.New(s).Level(zerolog.DebugLevel).With().Timestamp().Logger()
}

// String is everything logged so far.
func (s *LogSink) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.String()
}

// AssertAbsent fails the test if any of secrets appears in text.
func AssertAbsent(t testing.TB, where, text string, secrets ...string) {
	t.Helper()
	for _, s := range secrets {
		if s != "" && bytes.Contains([]byte(text), []byte(s)) {
			t.Errorf("%s contains the secret %q", where, s)
		}
	}
}

// Events returns every event on the events stream, decoded, and all
// their raw bytes (for secret checks).
func Events(t testing.TB, js jetstream.JetStream) ([]*event.Event, string) {
	t.Helper()
	ctx := Context(t, 10*time.Second)
	s, err := js.Stream(ctx, broker.StreamEvents)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var (
		out []*event.Event
		raw bytes.Buffer
	)
	for seq := info.State.FirstSeq; info.State.Msgs > 0 && seq <= info.State.LastSeq; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		raw.Write(m.Data)
		raw.WriteByte('\n')
		e, err := event.Decode(m.Data)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, e)
	}
	return out, raw.String()
}

// OfType keeps the events of one type.
func OfType(events []*event.Event, typ string) []*event.Event {
	var out []*event.Event
	for _, e := range events {
		if e.Type == typ {
			out = append(out, e)
		}
	}
	return out
}

// IMAPLogin logs in to a plain-text IMAP listener and logs out; it
// returns the server's refusal, if any.
func IMAPLogin(addr, user, password string) error {
	c, err := imapclient.DialInsecure(addr, nil)
	if err != nil {
		return fmt.Errorf("dial %s: %w", addr, err)
	}
	defer c.Close()
	if err := c.Login(user, password).Wait(); err != nil {
		return err
	}
	return c.Logout().Wait()
}

// IsRefusal reports whether err is the server refusing a login.
func IsRefusal(err error) bool {
	var ie *imap.Error
	return errors.As(err, &ie) && ie.Type == imap.StatusResponseTypeNo
}

// Dovecot starts an isolated Dovecot with users (address to password).
func Dovecot(t testing.TB, users map[string]string) *dovecottest.Server {
	t.Helper()
	return dovecottest.StartT(t, dovecottest.Options{Users: users})
}

// PasswdPath is the passwd-file of a dovecottest instance: the file its
// passdb and userdb read, which the Dovecot adapter under test rewrites.
func PasswdPath(s *dovecottest.Server) string { return filepath.Join(s.Dir, "passwd") }

// RequireChromium returns the path of Debian's chromium, failing under CI
// and skipping elsewhere when it is missing.
func RequireChromium(t testing.TB) string {
	t.Helper()
	return chromium.Require(t)
}
