package broker

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/rs/zerolog"

	"github.com/mailferry/mailferry/shared/testenv/tlstest"
)

// TestAClientSignsInOverTLSWithItsCertificate connects to a server that
// requires TLS and a client certificate (cluster.conf's tls block with
// verify), as nats.ca_file, nats.cert_file and nats.key_file say: the
// right certificate gets in; none, an untrusted server or a key file
// others may read do not.
func TestAClientSignsInOverTLSWithItsCertificate(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, _ := tlstest.SelfSigned(t, dir)
	other := t.TempDir()
	otherCert, _, _ := tlstest.SelfSigned(t, other)
	tc, err := server.GenTLSConfig(&server.TLSConfigOpts{CertFile: certFile, KeyFile: keyFile, CaFile: certFile, Verify: true})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, NoSigs: true, TLS: true, TLSConfig: tc, TLSVerify: true,
		Username: "svc", Password: "pw-of-svc"})
	if err != nil {
		t.Fatal(err)
	}
	srv.Start()
	defer srv.Shutdown()
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("server not ready")
	}
	pw := filepath.Join(dir, "pw")
	if err := os.WriteFile(pw, []byte("pw-of-svc\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	readable := filepath.Join(dir, "readable-key.pem")
	key, _ := os.ReadFile(keyFile)
	if err := os.WriteFile(readable, key, 0o644); err != nil {
		t.Fatal(err)
	}
	_ = os.Chmod(readable, 0o644)
	url := strings.Replace(srv.ClientURL(), "nats://", "tls://", 1)
	tests := []struct {
		name, tls, refused string
	}{
		{"its certificate, the server's CA", fmt.Sprintf("ca_file: %s, cert_file: %s, key_file: %s", certFile, certFile, keyFile), ""},
		{"no client certificate", fmt.Sprintf("ca_file: %s", certFile), "connect to nats"},
		{"a server its CA did not sign", fmt.Sprintf("ca_file: %s, cert_file: %s, key_file: %s", otherCert, certFile, keyFile), "certificate"},
		{"a key file others may read", fmt.Sprintf("ca_file: %s, cert_file: %s, key_file: %s", certFile, certFile, readable), "mode 0644"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			cfg := natsConfig(t, fmt.Sprintf("nats: {url: %s, user: svc, password_file: %s, %s}\n", url, pw, tt.tls))
			b, err := Connect(ctx, cfg, "test", zerolog.Nop())
			if tt.refused == "" {
				if err != nil {
					t.Fatal(err)
				}
				b.Close()
				return
			}
			if err == nil {
				b.Close()
				t.Fatalf("connected, want it refused (%s)", tt.refused)
			}
			if !strings.Contains(err.Error(), tt.refused) {
				t.Errorf("err = %v, want it to say %q", err, tt.refused)
			}
		})
	}
}
