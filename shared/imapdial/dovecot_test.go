package imapdial_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/mailferry/mailferry/shared/config"
	"github.com/mailferry/mailferry/shared/imapdial"
	"github.com/mailferry/mailferry/shared/testenv/dovecottest"
)

// TestAUserLoginUsesCRAMMD5WhereTheLinkIsNotEncrypted logs in to a real
// Dovecot that offers AUTH=CRAM-MD5 (as MailEnable does) over a link
// without TLS: the password itself never crosses it (Dovecot logs the
// mechanism), a wrong one is a refusal, and over TLS the plain LOGIN is
// used.
func TestAUserLoginUsesCRAMMD5WhereTheLinkIsNotEncrypted(t *testing.T) {
	srv := dovecottest.StartT(t, dovecottest.Options{
		Users: map[string]string{"anna@old.example": "her password"}, PlainPasswords: true, TLS: true,
		ExtraConfig: "auth_mechanisms = plain login cram-md5\n",
	})
	tests := []struct {
		name, password, method string
		tls                    string
		refused                bool
	}{
		{"her password, no TLS", "her password", "CRAM-MD5", config.TLSNone, false},
		{"a wrong password, no TLS", "not hers", "", config.TLSNone, true},
		{"her password over STARTTLS", "her password", "PLAIN", config.TLSStartTLS, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			o := imapdial.Options{Address: srv.Addr, TLS: tt.tls, DialTimeout: 10 * time.Second, CommandTimeout: 10 * time.Second}
			if tt.tls != config.TLSNone {
				pool := x509.NewCertPool()
				pool.AppendCertsFromPEM(srv.CACertPEM)
				o.TLSConfig = &tls.Config{ServerName: "127.0.0.1", RootCAs: pool, MinVersion: tls.VersionTLS12}
			}
			c, err := imapdial.DialConn(ctx, o, imapdial.Credentials{User: "anna@old.example", Password: tt.password})
			if tt.refused {
				if !errors.Is(err, imapdial.ErrLoginRefused) {
					t.Fatalf("err = %v, want a refusal", err)
				}
				if strings.Contains(err.Error(), tt.password) {
					t.Errorf("the error shows the password: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			c.Close()
			deadline := time.Now().Add(5 * time.Second)
			for !strings.Contains(srv.LogTail(50), "method="+tt.method) && time.Now().Before(deadline) {
				time.Sleep(50 * time.Millisecond)
			}
			if !strings.Contains(srv.LogTail(50), "method="+tt.method) {
				t.Errorf("Dovecot did not log a %s login:\n%s", tt.method, srv.LogTail(20))
			}
		})
	}
}
