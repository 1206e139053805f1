package imapdial

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"

	"github.com/mailferry/mailferry/shared/config"
	"github.com/mailferry/mailferry/shared/testenv/imaptest"
)

// bound is how long a test waits for anything that should happen at once.
const bound = 10 * time.Second

// testCert is a self-signed certificate for imap.example and 127.0.0.1,
// and its PEM in a file to name as ca_file.
type testCert struct {
	tls    tls.Certificate
	caFile string
}

func newTestCert(t *testing.T) testCert {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "imap.example"},
		DNSNames: []string{"imap.example"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA: true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return testCert{tls: tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, caFile: caFile}
}

// peer is the server side of one fake connection.
type peer struct {
	conn net.Conn
	br   *bufio.Reader
}

func (p *peer) send(lines ...string) error {
	for _, l := range lines {
		if _, err := p.conn.Write([]byte(l + "\r\n")); err != nil {
			return err
		}
	}
	return nil
}

func (p *peer) read() (string, error) {
	l, err := p.br.ReadString('\n')
	return strings.TrimRight(l, "\r\n"), err
}

// startTLS upgrades the peer to TLS with cert.
func (p *peer) startTLS(cert tls.Certificate) error {
	tc := tls.Server(p.conn, &tls.Config{Certificates: []tls.Certificate{cert}})
	if err := tc.Handshake(); err != nil {
		return err
	}
	p.conn, p.br = tc, bufio.NewReader(tc)
	return nil
}

// fakeServer runs script on every connection to a fresh listener, with
// implicit TLS when cert is set, and returns the listener's address.
func fakeServer(t *testing.T, cert *tls.Certificate, script func(p *peer) error) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() {
		ln.Close()
		<-done
	})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				p := &peer{conn: c, br: bufio.NewReader(c)}
				if cert != nil {
					if err := p.startTLS(*cert); err != nil {
						return
					}
				}
				_ = script(p)
			}()
		}
	}()
	return ln.Addr().String()
}

// loginScript greets with caps (or asks the client to ask with
// STARTTLS on offer), takes STARTTLS when asked, then accepts LOGIN or
// AUTHENTICATE with answer and serves CAPABILITY and LOGOUT.
func loginScript(cert tls.Certificate, greeting, answer string) func(p *peer) error {
	return func(p *peer) error {
		if err := p.send(greeting); err != nil {
			return err
		}
		for {
			l, err := p.read()
			if err != nil {
				return err
			}
			tag, cmd, _ := strings.Cut(l, " ")
			verb, _, _ := strings.Cut(cmd, " ")
			switch strings.ToUpper(verb) {
			case "CAPABILITY":
				err = p.send("* CAPABILITY IMAP4rev1 STARTTLS AUTH=PLAIN SASL-IR", tag+" OK done")
			case "STARTTLS":
				if err = p.send(tag + " OK begin TLS"); err == nil {
					err = p.startTLS(cert)
				}
			case "LOGIN", "AUTHENTICATE":
				err = p.send(tag + " " + answer)
			case "LOGOUT":
				return p.send("* BYE bye", tag+" OK done")
			default:
				err = p.send(tag + " BAD unexpected " + verb)
			}
			if err != nil {
				return err
			}
		}
	}
}

func TestDialSetsUpTLSAsConfiguredAndVerifiesByDefault(t *testing.T) {
	cert := newTestCert(t)
	other := newTestCert(t) // a CA that did not sign the server's certificate
	const loggedIn = "OK [CAPABILITY IMAP4rev1 MULTIAPPEND] logged in"
	plain := fakeServer(t, nil, loginScript(cert.tls, "* OK [CAPABILITY IMAP4rev1 STARTTLS AUTH=PLAIN] hi", loggedIn))
	implicit := fakeServer(t, &cert.tls, loginScript(cert.tls, "* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] hi", loggedIn))
	noStartTLS := fakeServer(t, nil, loginScript(cert.tls, "* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] hi", loggedIn))
	preauth := fakeServer(t, nil, loginScript(cert.tls, "* PREAUTH [CAPABILITY IMAP4rev1 STARTTLS] hi", loggedIn))
	for _, tc := range []struct {
		name    string
		s       config.IMAP
		wantErr string // substring; empty for success
	}{
		{name: "plain when configured", s: config.IMAP{Address: plain, TLS: config.TLSNone}},
		{name: "implicit TLS with the CA", s: config.IMAP{Address: implicit, TLS: config.TLSImplicit, CAFile: cert.caFile}},
		{name: "STARTTLS with the CA", s: config.IMAP{Address: plain, TLS: config.TLSStartTLS, CAFile: cert.caFile}},
		{name: "server name pinned apart from the address", s: config.IMAP{Address: implicit, TLS: config.TLSImplicit, CAFile: cert.caFile, ServerName: "imap.example"}},
		{name: "an untrusted certificate by explicit opt-in", s: config.IMAP{Address: implicit, TLS: config.TLSImplicit, InsecureSkipVerify: true}},
		{name: "implicit TLS refuses an untrusted certificate", s: config.IMAP{Address: implicit, TLS: config.TLSImplicit}, wantErr: "certificate"},
		{name: "STARTTLS refuses an untrusted certificate", s: config.IMAP{Address: plain, TLS: config.TLSStartTLS}, wantErr: "certificate"},
		{name: "a CA that did not sign the certificate is refused", s: config.IMAP{Address: implicit, TLS: config.TLSImplicit, CAFile: other.caFile}, wantErr: "certificate"},
		{name: "a pinned name the certificate lacks is refused", s: config.IMAP{Address: implicit, TLS: config.TLSImplicit, CAFile: cert.caFile, ServerName: "other.example"}, wantErr: "certificate"},
		{name: "STARTTLS required but not offered: no plain login", s: config.IMAP{Address: noStartTLS, TLS: config.TLSStartTLS, CAFile: cert.caFile}, wantErr: "does not offer STARTTLS"},
		{name: "PREAUTH before STARTTLS is refused", s: config.IMAP{Address: preauth, TLS: config.TLSStartTLS, CAFile: cert.caFile}, wantErr: "PREAUTH"},
		{name: "implicit TLS against a plain server fails", s: config.IMAP{Address: plain, TLS: config.TLSImplicit, CAFile: cert.caFile}, wantErr: "tls handshake"},
		{name: "unknown TLS mode", s: config.IMAP{Address: plain, TLS: "maybe"}, wantErr: "unknown"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), bound)
			defer cancel()
			tc.s.DialTimeout = config.Duration(bound)
			c, err := Dial(ctx, tc.s, Credentials{User: "u", Password: "secret-pw"}, nil)
			if tc.wantErr != "" {
				if err == nil {
					c.Close()
					t.Fatalf("Dial succeeded, want an error containing %q", tc.wantErr)
				}
				if !strings.Contains(err.Error(), tc.wantErr) {
					t.Errorf("Dial: %v, want an error containing %q", err, tc.wantErr)
				}
				if strings.Contains(err.Error(), "secret-pw") {
					t.Errorf("error reveals the password: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Dial: %v", err)
			}
			defer c.Close()
			if c.State() != imap.ConnStateAuthenticated || !c.Caps().Has("MULTIAPPEND") {
				t.Errorf("go-imap client in state %v with caps %v, want authenticated with the caps of the login", c.State(), c.Caps())
			}
			if err := c.Logout().Wait(); err != nil {
				t.Errorf("Logout: %v", err)
			}
		})
	}
}

func TestDialWrapsALoginFailureWithTheServersAnswer(t *testing.T) {
	cert := newTestCert(t)
	const greeting = "* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN SASL-IR] hi"
	master := Credentials{User: "u@example.org", MasterUser: "admin", MasterPassword: "master-pw"}
	user := Credentials{User: "u@example.org", Password: "user-pw"}
	for _, tc := range []struct {
		name        string
		cred        Credentials
		answer      string
		wantRefused bool
		wantCode    string
	}{
		{name: "wrong password", cred: user, answer: "NO [AUTHENTICATIONFAILED] Authentication failed.", wantRefused: true, wantCode: "AUTHENTICATIONFAILED"},
		{name: "master may not act for the user", cred: master, answer: "NO [AUTHORIZATIONFAILED] Not allowed.", wantRefused: true, wantCode: "AUTHORIZATIONFAILED"},
		{name: "expired password", cred: user, answer: "NO [EXPIRED] Password expired.", wantRefused: true, wantCode: "EXPIRED"},
		{name: "temporary failure is no refusal", cred: master, answer: "NO [UNAVAILABLE] Try later.", wantCode: "UNAVAILABLE"},
		{name: "a bare NO, as MailEnable answers a wrong password", cred: user, answer: "NO Invalid username or password", wantRefused: true},
		{name: "a NO with a code no login failure has", cred: user, answer: "NO [CONTACTADMIN] Account disabled.", wantRefused: true, wantCode: "CONTACTADMIN"},
		{name: "bad command is no refusal", cred: user, answer: "BAD What?"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr := fakeServer(t, nil, loginScript(cert.tls, greeting, tc.answer))
			ctx, cancel := context.WithTimeout(context.Background(), bound)
			defer cancel()
			_, err := DialConn(ctx, Options{Address: addr, TLS: config.TLSNone, DialTimeout: bound}, tc.cred)
			if err == nil {
				t.Fatal("DialConn succeeded against a refusing server")
			}
			var se *ServerError
			if !errors.As(err, &se) || !strings.HasSuffix(se.Line, tc.answer) || se.Code != tc.wantCode {
				t.Errorf("error %v: want the server's answer %q as a *ServerError", err, tc.answer)
			}
			if errors.Is(err, ErrLoginRefused) != tc.wantRefused {
				t.Errorf("error %v: ErrLoginRefused %v, want %v", err, !tc.wantRefused, tc.wantRefused)
			}
			if !strings.Contains(err.Error(), "log in to "+addr+" as "+tc.cred.String()) {
				t.Errorf("error %v does not say whom it logged in as where", err)
			}
			for _, pw := range []string{"master-pw", "user-pw"} {
				if strings.Contains(err.Error(), pw) {
					t.Errorf("error reveals the password: %v", err)
				}
			}
		})
	}
}

func TestDialLogsInWithTheMethodTheCredentialsCallFor(t *testing.T) {
	for _, tc := range []struct {
		name string
		cred Credentials
		want string // the login command after the tag
	}{
		{name: "master: SASL PLAIN with the user as authorization identity", cred: Credentials{User: "u@example.org", MasterUser: "admin", MasterPassword: "m"},
			want: "AUTHENTICATE PLAIN " + base64.StdEncoding.EncodeToString([]byte("u@example.org\x00admin\x00m"))},
		{name: "user: LOGIN with quoted strings", cred: Credentials{User: "u@example.org", Password: `p"w`}, want: `LOGIN "u@example.org" "p\"w"`},
		{name: "user: 8-bit password as a literal", cred: Credentials{User: "u", Password: "pä"}, want: `LOGIN "u" {3+}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := make(chan string, 1)
			addr := fakeServer(t, nil, func(p *peer) error {
				if err := p.send("* OK [CAPABILITY IMAP4rev1 LITERAL+ AUTH=PLAIN SASL-IR] hi"); err != nil {
					return err
				}
				l, err := p.read()
				if err != nil {
					return err
				}
				got <- strings.TrimPrefix(l, "A1 ")
				if strings.HasSuffix(l, "+}") {
					if _, err := p.read(); err != nil { // the literal and the rest
						return err
					}
				}
				return p.send("A1 OK [CAPABILITY IMAP4rev1] in")
			})
			ctx, cancel := context.WithTimeout(context.Background(), bound)
			defer cancel()
			c, err := DialConn(ctx, Options{Address: addr, TLS: config.TLSNone, DialTimeout: bound}, tc.cred)
			if err != nil {
				t.Fatalf("DialConn: %v", err)
			}
			c.Close()
			if l := <-got; l != tc.want {
				t.Errorf("login command %q, want %q", l, tc.want)
			}
		})
	}
}

// stalled is a server that accepts connections and then neither reads nor
// writes until the test ends; greet makes it greet first, and log in
// whoever asks.
func stalled(t *testing.T, greet bool) string {
	t.Helper()
	release := make(chan struct{})
	addr := fakeServer(t, nil, func(p *peer) error {
		if greet {
			if err := p.send("* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] hi"); err != nil {
				return err
			}
			l, err := p.read()
			if err != nil {
				return err
			}
			tag, _, _ := strings.Cut(l, " ")
			if err := p.send(tag + " OK [CAPABILITY IMAP4rev1] in"); err != nil {
				return err
			}
		}
		<-release
		return nil
	})
	t.Cleanup(func() { close(release) }) // runs before the listener closes
	return addr
}

// within runs f and fails the test when it does not return within bound.
func within(t *testing.T, f func() error) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- f() }()
	select {
	case err := <-done:
		return err
	case <-time.After(bound):
		t.Fatalf("still waiting after %s", bound)
		return nil
	}
}

func TestWatchdogFailsACommandOnAStalledServer(t *testing.T) {
	const idle = 200 * time.Millisecond
	cred := Credentials{User: "u", Password: "p"}
	t.Run("raw connection", func(t *testing.T) {
		addr := stalled(t, true)
		c, err := DialConn(context.Background(), Options{Address: addr, TLS: config.TLSNone, DialTimeout: bound, CommandTimeout: idle}, cred)
		if err != nil {
			t.Fatalf("DialConn: %v", err)
		}
		err = within(t, func() error { return c.Logout(context.Background()) })
		if err == nil || !strings.Contains(err.Error(), "no progress for "+idle.String()) {
			t.Errorf("Logout on a stalled server: %v, want the watchdog's error", err)
		}
	})
	t.Run("go-imap client", func(t *testing.T) {
		addr := stalled(t, true)
		c, err := Dial(context.Background(), config.IMAP{Address: addr, TLS: config.TLSNone, DialTimeout: config.Duration(bound)}, cred, nil)
		if err != nil {
			t.Fatalf("Dial: %v", err)
		}
		defer c.Close()
		wd := Watch(context.Background(), c, idle)
		err = within(t, func() error { return c.Noop().Wait() })
		if !wd.Stop() {
			t.Error("Stop says the watchdog did not fire")
		}
		if err = wd.Err(err); err == nil || !strings.Contains(err.Error(), "no progress for "+idle.String()) {
			t.Errorf("NOOP on a stalled server: %v, want the watchdog's error", err)
		}
	})
	t.Run("kicks keep it quiet", func(t *testing.T) {
		addr := stalled(t, true)
		c, err := Dial(context.Background(), config.IMAP{Address: addr, TLS: config.TLSNone, DialTimeout: config.Duration(bound)}, cred, nil)
		if err != nil {
			t.Fatalf("Dial: %v", err)
		}
		defer c.Close()
		wd := Watch(context.Background(), c, time.Hour)
		if err := wd.Err(errors.New("x")); err.Error() != "x" {
			t.Errorf("Err before any timeout = %v", err)
		}
		wd.Kick()
		if wd.Stop() {
			t.Error("a watchdog that was kicked and stopped in time fired")
		}
	})
	t.Run("context ends the command", func(t *testing.T) {
		addr := stalled(t, true)
		c, err := DialConn(context.Background(), Options{Address: addr, TLS: config.TLSNone, DialTimeout: bound, CommandTimeout: time.Hour}, cred)
		if err != nil {
			t.Fatalf("DialConn: %v", err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		wd := c.Watch(ctx)
		errc := make(chan error, 1)
		go func() { _, err := c.run(arg(" NOOP")); errc <- err }()
		cancel()
		err = within(t, func() error { return <-errc })
		wd.Stop()
		if err = wd.Err(err); !errors.Is(err, context.Canceled) {
			t.Errorf("NOOP after cancel: %v, want context.Canceled", err)
		}
	})
	t.Run("handshake", func(t *testing.T) {
		addr := stalled(t, false)
		err := within(t, func() error {
			_, err := DialConn(context.Background(), Options{Address: addr, TLS: config.TLSNone, DialTimeout: idle}, cred)
			return err
		})
		if err == nil || !strings.Contains(err.Error(), "handshake not done within "+idle.String()) {
			t.Errorf("DialConn to a server that never greets: %v", err)
		}
	})
	t.Run("handshake cancelled", func(t *testing.T) {
		addr := stalled(t, false)
		ctx, cancel := context.WithCancel(context.Background())
		errc := make(chan error, 1)
		go func() {
			_, err := DialConn(ctx, Options{Address: addr, TLS: config.TLSNone, DialTimeout: bound}, cred)
			errc <- err
		}()
		cancel()
		if err := within(t, func() error { return <-errc }); !errors.Is(err, context.Canceled) {
			t.Errorf("DialConn cancelled: %v, want context.Canceled", err)
		}
	})
}

func TestHandedOverClientWorksOnARealServer(t *testing.T) {
	addr := imaptest.Serve(t, imaptest.NewUser(t, "u", "p"), imap.CapSet{imap.CapIMAP4rev1: {}, imap.CapUIDPlus: {}}, nil)
	ctx, cancel := context.WithTimeout(context.Background(), bound)
	defer cancel()
	c, err := Dial(ctx, config.IMAP{Address: addr, TLS: config.TLSNone, DialTimeout: config.Duration(bound)}, Credentials{User: "u", Password: "p"}, nil)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	defer c.Close()
	if !c.Caps().Has(imap.CapUIDPlus) {
		t.Errorf("caps %v lack UIDPLUS", c.Caps())
	}
	msg := "Subject: hi\r\n\r\nhello\r\n"
	app := c.Append("INBOX", int64(len(msg)), nil)
	if _, err := app.Write([]byte(msg)); err != nil {
		t.Fatal(err)
	}
	if err := app.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := app.Wait(); err != nil {
		t.Fatalf("APPEND: %v", err)
	}
	sel, err := c.Select("INBOX", nil).Wait()
	if err != nil || sel.NumMessages != 1 {
		t.Fatalf("SELECT INBOX = %+v, %v; want the appended message", sel, err)
	}
	if err := c.Logout().Wait(); err != nil {
		t.Errorf("LOGOUT: %v", err)
	}
}

func ExampleOptionsFor() {
	o, err := OptionsFor(config.IMAP{Address: "imap.example:993", TLS: config.TLSImplicit})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(o.TLSConfig.ServerName, o.TLSConfig.InsecureSkipVerify)
	// Output: imap.example false
}
