package legacyimap

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mailferry/mailferry/services/auth/internal/authtest"
	"github.com/mailferry/mailferry/shared/config"
	"github.com/mailferry/mailferry/shared/testenv/dovecottest"
)

func server(addr string) config.IMAP {
	return config.IMAP{Address: addr, TLS: config.TLSNone, Auth: config.AuthUser, Connections: 2,
		CommandTimeout: config.Duration(10 * time.Second), DialTimeout: config.Duration(5 * time.Second)}
}

const (
	dave   = "dave@legacy.example"
	davePw = `Old pass: with spaces & "quotes" {5} \ %*`
)

func TestVerifyAgainstARealLegacyServer(t *testing.T) {
	srv := authtest.Dovecot(t, map[string]string{dave: davePw, "erin@legacy.example": "Erin-Pw-1"})
	v := New(server(srv.Addr))
	ctx := authtest.Context(t, time.Minute)
	for _, tc := range []struct {
		name, user, password string
		want                 bool
	}{
		{"the right password", dave, davePw, true},
		{"a wrong password", dave, davePw + "x", false},
		{"an unknown user", "nobody@legacy.example", davePw, false},
		// Literals carry every byte as data: nothing here is a command.
		{"a password that reads like a second command", dave, "x\r\nL9 LOGIN erin@legacy.example Erin-Pw-1", false},
		{"a password that reads like a literal", dave, "{9}\r\nErin-Pw-1", false},
		{"a user name with a quote", `dave"@legacy.example`, davePw, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ok, err := v.Verify(ctx, tc.user, tc.password, "192.0.2.10")
			if err != nil || ok != tc.want {
				t.Fatalf("Verify = %v, %v; want %v", ok, err, tc.want)
			}
		})
	}
}

func TestVerifyOverTLS(t *testing.T) {
	srv := dovecottest.StartT(t, dovecottest.Options{TLS: true, Users: map[string]string{dave: davePw}})
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, srv.CACertPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	ctx := authtest.Context(t, time.Minute)
	for _, tc := range []struct {
		name, mode, addr string
	}{
		{"STARTTLS", config.TLSStartTLS, srv.Addr},
		{"implicit TLS", config.TLSImplicit, srv.TLSAddr},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := server(tc.addr)
			s.TLS, s.CAFile = tc.mode, ca
			v := New(s)
			if ok, err := v.Verify(ctx, dave, davePw, "192.0.2.11"); err != nil || !ok {
				t.Fatalf("right password: %v, %v", ok, err)
			}
			if ok, err := v.Verify(ctx, dave, "wrong", "192.0.2.11"); err != nil || ok {
				t.Fatalf("wrong password: %v, %v", ok, err)
			}
		})
	}
	// An unverified certificate is refused.
	s := server(srv.TLSAddr)
	s.TLS = config.TLSImplicit
	if ok, err := New(s).Verify(ctx, dave, davePw, "192.0.2.11"); ok || err == nil {
		t.Fatalf("self-signed certificate without ca_file: %v, %v", ok, err)
	}
}

func TestVerifyReportsAnUnreachableServerAsAnError(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	ok, err := New(server(addr)).Verify(authtest.Context(t, 30*time.Second), "u@example.org", "Secret-123!", "192.0.2.1")
	if ok || err == nil {
		t.Fatalf("Verify = %v, %v; want an error", ok, err)
	}
	var cc interface{ ClientCaused() bool }
	if errors.As(err, &cc) {
		t.Fatalf("an unreachable server blamed on the client: %v", err)
	}
	if strings.Contains(err.Error(), "Secret-123!") {
		t.Fatalf("error quotes the password: %v", err)
	}
}

// penaltyDovecot is a legacy Dovecot as deployed: failed logins slow
// down later ones from the same address (auth penalty: 2, 4, 8, 15 s),
// and the auth service's address is in login_trusted_networks, so the
// address that counts is the one the service names in ID.
func penaltyDovecot(t *testing.T, users map[string]string) *dovecottest.Server {
	t.Helper()
	return dovecottest.StartT(t, dovecottest.Options{Users: users, ExtraConfig: `
login_trusted_networks = 127.0.0.0/8
service anvil {
  unix_listener anvil-auth-penalty {
    mode = 0600
  }
}
`})
}

// TestClientAddressReachesTheLegacyServer: the server logs the client's
// address, not the auth service's, and delays only the client whose
// logins failed.
func TestClientAddressReachesTheLegacyServer(t *testing.T) {
	srv := penaltyDovecot(t, map[string]string{dave: davePw, "erin@legacy.example": "Erin-Pw-1"})
	s := server(srv.Addr)
	s.CommandTimeout = config.Duration(1500 * time.Millisecond)
	v := New(s)
	ctx := authtest.Context(t, time.Minute)
	const attacker, user = "198.51.100.66", "203.0.113.5"
	for range 3 {
		// Each wrong password adds to the attacker's penalty (at most
		// 2 s each so far, under the command timeout or not).
		_, _ = v.Verify(ctx, dave, "guess-"+time.Now().String(), attacker)
	}
	if !strings.Contains(srv.LogTail(200), attacker) {
		t.Fatalf("the legacy server's log does not name the client address:\n%s", srv.LogTail(30))
	}
	// The attacker now waits 8 s for any answer: past the timeout, and
	// his own doing.
	ok, err := v.Verify(ctx, dave, davePw, attacker)
	var cc interface{ ClientCaused() bool }
	if ok || !errors.Is(err, ErrNoAnswer) || !errors.As(err, &cc) || !cc.ClientCaused() {
		t.Fatalf("attacker after 3 failures: %v, %v; want ErrNoAnswer caused by the client", ok, err)
	}
	// The user at another address is answered at once.
	if ok, err := v.Verify(ctx, "erin@legacy.example", "Erin-Pw-1", user); err != nil || !ok {
		t.Fatalf("another client's right password: %v, %v", ok, err)
	}
}

// quietServer greets every connection with greeting, answers the first
// command when it is ID and answerID is set, and then reads without ever
// answering, as Dovecot does on LOGIN for an address with a penalty.
func quietServer(t *testing.T, greeting string, answerID bool) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.Write([]byte(greeting + "\r\n"))
				buf := make([]byte, 4096)
				if answerID {
					n, _ := c.Read(buf)
					if strings.Contains(string(buf[:n]), " ID ") {
						c.Write([]byte("* ID NIL\r\nL1 OK ID completed\r\n"))
					}
				}
				for {
					if _, err := c.Read(buf); err != nil {
						return
					}
				}
			}()
		}
	}()
	return ln.Addr().String()
}

func TestNoAnswerBeforeTheDeadlineIsTheClients(t *testing.T) {
	addr := quietServer(t, "* OK [CAPABILITY IMAP4rev1 ID LITERAL+] ready", true)
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	ok, err := New(server(addr)).Verify(ctx, dave, davePw, "192.0.2.9")
	var cc interface{ ClientCaused() bool }
	if ok || !errors.Is(err, ErrNoAnswer) || !errors.As(err, &cc) {
		t.Fatalf("Verify = %v, %v; want ErrNoAnswer caused by the client", ok, err)
	}
	if strings.Contains(err.Error(), davePw) {
		t.Fatalf("error quotes the password: %v", err)
	}
}

func TestAGreetingThatSkipsTheLoginIsAnError(t *testing.T) {
	// Logged in already: a LOGIN would prove nothing.
	addr := quietServer(t, "* PREAUTH [CAPABILITY IMAP4rev1 ID] welcome", false)
	ok, err := New(server(addr)).Verify(authtest.Context(t, 30*time.Second), dave, davePw, "192.0.2.7")
	if ok || err == nil || !strings.Contains(err.Error(), "PREAUTH") {
		t.Fatalf("Verify = %v, %v; want an error naming PREAUTH", ok, err)
	}
	var cc interface{ ClientCaused() bool }
	if errors.As(err, &cc) {
		t.Errorf("a server that skips the login blamed on the client: %v", err)
	}
}
