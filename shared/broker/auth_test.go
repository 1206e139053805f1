package broker

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"

	"github.com/mailferry/mailferry/shared/config"
	"github.com/mailferry/mailferry/shared/testenv/tlstest"
)

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func natsConfig(t *testing.T, yaml string) config.NATS {
	t.Helper()
	cfg, err := config.Parse([]byte(yaml), t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	return cfg.NATS
}

func open(t *testing.T, cfg config.NATS) *Broker {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b, err := Open(ctx, cfg, "test", zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	return b
}

func TestAListeningBrokerRefusesClientsWithoutItsCredentials(t *testing.T) {
	dir := t.TempDir()
	addr := freeAddr(t)
	srv := open(t, natsConfig(t, "nats: {data_dir: "+dir+", listen: "+addr+"}\n"))
	url := srv.ClientURL()

	pwFile := filepath.Join(dir, PasswordFileName)
	st, err := os.Stat(pwFile)
	if err != nil {
		t.Fatalf("no password file made on first start: %v", err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("password file mode %04o, want 0600", st.Mode().Perm())
	}
	b, _ := os.ReadFile(pwFile)
	pw := strings.TrimSpace(string(b))

	tests := []struct {
		name string
		opts []nats.Option
		ok   bool
	}{
		{"no credentials", nil, false},
		{"wrong password", []nats.Option{nats.UserInfo(DefaultUser, "guess")}, false},
		{"the broker's credentials", []nats.Option{nats.UserInfo(DefaultUser, pw)}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			nc, err := nats.Connect(url, append(tt.opts, nats.MaxReconnects(0))...)
			if tt.ok {
				if err != nil {
					t.Fatalf("connect: %v", err)
				}
				defer nc.Close()
				if _, err := nc.Request("$JS.API.INFO", nil, 5*time.Second); err != nil {
					t.Errorf("JetStream with credentials: %v", err)
				}
				return
			}
			if err == nil {
				nc.Close()
				t.Fatal("connected without the broker's credentials")
			}
			if !errors.Is(err, nats.ErrAuthorization) && !strings.Contains(strings.ToLower(err.Error()), "authorization") {
				t.Errorf("err = %v, want an authorization violation", err)
			}
		})
	}

	t.Run("a client sharing data_dir finds the credentials", func(t *testing.T) {
		open(t, natsConfig(t, "nats: {url: "+url+", data_dir: "+dir+"}\n"))
	})
	t.Run("a client configured with user and password_file", func(t *testing.T) {
		own := filepath.Join(t.TempDir(), "nats.pw")
		if err := os.WriteFile(own, []byte(pw+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		open(t, natsConfig(t, "nats: {url: "+url+", user: "+DefaultUser+", password_file: "+own+", data_dir: "+t.TempDir()+"}\n"))
	})
}

func TestAListeningBrokerKeepsItsCredentialsAcrossRestarts(t *testing.T) {
	dir := t.TempDir()
	cfg := natsConfig(t, "nats: {data_dir: "+dir+", listen: "+freeAddr(t)+"}\n")
	b := open(t, cfg)
	first, _ := os.ReadFile(filepath.Join(dir, PasswordFileName))
	b.Close()
	open(t, cfg)
	again, _ := os.ReadFile(filepath.Join(dir, PasswordFileName))
	if len(first) == 0 || string(first) != string(again) {
		t.Error("the password changed on restart: clients configured with it would be locked out")
	}
}

func TestConfiguredBrokerCredentialsAreRequired(t *testing.T) {
	dir := t.TempDir()
	pwFile := filepath.Join(dir, "ops.pw")
	if err := os.WriteFile(pwFile, []byte("a-long-operator-password\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	srv := open(t, natsConfig(t, "nats: {data_dir: "+filepath.Join(dir, "nats")+", listen: "+freeAddr(t)+", user: ops, password_file: "+pwFile+"}\n"))
	if _, err := os.Stat(filepath.Join(dir, "nats", PasswordFileName)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a password file was made although credentials are configured: %v", err)
	}
	if nc, err := nats.Connect(srv.ClientURL(), nats.UserInfo(DefaultUser, "a-long-operator-password"), nats.MaxReconnects(0)); err == nil {
		nc.Close()
		t.Error("the default user got in; only the configured one may")
	}
	nc, err := nats.Connect(srv.ClientURL(), nats.UserInfo("ops", "a-long-operator-password"), nats.MaxReconnects(0))
	if err != nil {
		t.Fatalf("configured credentials: %v", err)
	}
	nc.Close()
}

func TestABrokerRefusesToListenBeyondLoopbackWithoutTLS(t *testing.T) {
	for _, listen := range []string{"0.0.0.0:0", "[::]:0"} {
		cfg := natsConfig(t, "nats: {data_dir: "+t.TempDir()+", listen: \""+listen+"\"}\n")
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		b, err := Open(ctx, cfg, "test", zerolog.Nop())
		cancel()
		if err == nil {
			b.Close()
			t.Errorf("listen %s without TLS was accepted", listen)
			continue
		}
		if !strings.Contains(err.Error(), "not a loopback address") {
			t.Errorf("listen %s: err = %v, want it to say why", listen, err)
		}
	}
}

func TestAnInProcessBrokerOpensNoPort(t *testing.T) {
	b := open(t, natsConfig(t, "nats: {data_dir: "+t.TempDir()+"}\n"))
	if !b.Private() || b.ClientURL() != "" {
		t.Errorf("an embedded broker without nats.listen is reachable from outside (url %q)", b.ClientURL())
	}
}

func TestABrokerWithACertificateListensOnlyOverTLS(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, pool := tlstest.SelfSigned(t, dir)
	srv := open(t, natsConfig(t, "nats: {data_dir: "+filepath.Join(dir, "nats")+", listen: "+freeAddr(t)+", listen_cert_file: "+certFile+", listen_key_file: "+keyFile+"}\n"))
	b, _ := os.ReadFile(filepath.Join(dir, "nats", PasswordFileName))
	creds := nats.UserInfo(DefaultUser, strings.TrimSpace(string(b)))
	url := strings.Replace(srv.ClientURL(), "nats://", "tls://", 1)
	nc, err := nats.Connect(url, creds, nats.Secure(&tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}), nats.MaxReconnects(0))
	if err != nil {
		t.Fatalf("TLS client with credentials: %v", err)
	}
	nc.Close()
	if nc, err := nats.Connect(srv.ClientURL(), creds, nats.MaxReconnects(0)); err == nil {
		nc.Close()
		t.Error("a plain-text client got in")
	}
}
