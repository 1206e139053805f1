package migrate_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mailferry/mailferry/cmd/mailferry/migrate"
	"github.com/mailferry/mailferry/shared/config"
	"github.com/mailferry/mailferry/shared/imapdial"
	"github.com/mailferry/mailferry/shared/testenv/dovecottest"
	"github.com/mailferry/mailferry/shared/testenv/e2etest"
)

func TestMigrateOverVerifiedTLSImplicitAndStartTLS(t *testing.T) {
	users := map[string]string{"tls@old.example": "pw"}
	src := dovecottest.StartT(t, dovecottest.Options{Separator: '/', MasterUser: "admin", MasterPassword: e2etest.MasterPassword, Users: users, TLS: true})
	tgt := dovecottest.StartT(t, dovecottest.Options{Separator: '.', MasterUser: "admin", MasterPassword: e2etest.MasterPassword, Users: users, TLS: true})
	msgs := []dovecottest.Message{
		{Body: []byte("Subject: over tls\r\n\r\nhello\r\n"), Flags: []string{`\Seen`}, Date: time.Unix(1_300_000_000, 0)},
		{Body: e2etest.BigMessage(700_000, "tls-large"), Date: time.Unix(1_300_000_100, 0)},
	}
	if err := src.Seed("tls@old.example", "INBOX", msgs); err != nil {
		t.Fatal(err)
	}
	p := &e2etest.Peers{Src: src, Tgt: tgt, Dir: t.TempDir(), Users: []string{"tls@old.example"}}
	_, cfg := p.Config(t, filepath.Join(p.Dir, "nats"))
	ca := filepath.Join(p.Dir, "ca.pem")
	if err := os.WriteFile(ca, append(append([]byte{}, src.CACertPEM...), tgt.CACertPEM...), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg.Source.Address, cfg.Source.TLS, cfg.Source.CAFile = src.TLSAddr, config.TLSImplicit, ca
	cfg.Target.TLS, cfg.Target.CAFile = config.TLSStartTLS, ca
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	res, err := migrate.Run(ctx, cfg, e2etest.Logger(t), migrate.Options{})
	if err != nil {
		t.Fatal(err)
	}
	checkOnlyAlteredByTarget(t, res, nil)
	if res.Report.Mailboxes[0].Messages != 2 {
		t.Errorf("verified %d messages, want 2", res.Report.Mailboxes[0].Messages)
	}
}

func TestDialRefusesUnverifiedCertificates(t *testing.T) {
	srv := dovecottest.StartT(t, dovecottest.Options{Users: map[string]string{"u@x.example": "pw"}, TLS: true})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tests := []struct {
		name string
		s    config.IMAP
	}{
		{"implicit", config.IMAP{Address: srv.TLSAddr, TLS: config.TLSImplicit}},
		{"starttls", config.IMAP{Address: srv.Addr, TLS: config.TLSStartTLS}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.s.DialTimeout = config.Duration(10 * time.Second)
			c, err := imapdial.Dial(ctx, tt.s, imapdial.Credentials{User: "u@x.example", Password: "pw"}, nil)
			if err == nil {
				c.Close()
				t.Fatal("connected to a server whose certificate no configured CA signed")
			}
			if !strings.Contains(err.Error(), "certificate") {
				t.Errorf("err = %v, want a certificate error", err)
			}
			if strings.Contains(err.Error(), "pw") {
				t.Errorf("error shows the password: %v", err)
			}
		})
	}
}
