package auth

import (
	"context"
	"net"
	"path/filepath"
	"testing"

	"github.com/mailferry/mailferry/services/auth/authconfig"
	"github.com/mailferry/mailferry/shared/config"
)

func TestTheDaemonIsReadyOnlyWhenItsPeersAre(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	up := ln.Addr().String()
	down, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gone := down.Addr().String()
	down.Close()
	dir := t.TempDir()
	tests := []struct {
		name string
		a    authconfig.Auth
		// want maps each check to whether it passes.
		want map[string]bool
	}{
		{"the OMA endpoint answers", authconfig.Auth{Provider: authconfig.ProviderOpenSRS, OpenSRS: authconfig.OpenSRS{URL: "http://" + up + "/api"}}, map[string]bool{"provider": true}},
		{"the OMA endpoint is down", authconfig.Auth{Provider: authconfig.ProviderOpenSRS, OpenSRS: authconfig.OpenSRS{URL: "https://" + gone + "/api"}}, map[string]bool{"provider": false}},
		{"the passwd-file's directory is there", authconfig.Auth{Provider: authconfig.ProviderDovecot, Dovecot: authconfig.Dovecot{PasswdFile: filepath.Join(dir, "passwd")}}, map[string]bool{"provider": true}},
		{"the passwd-file's directory is not", authconfig.Auth{Provider: authconfig.ProviderDovecot, Dovecot: authconfig.Dovecot{PasswdFile: filepath.Join(dir, "gone", "passwd")}}, map[string]bool{"provider": false}},
		{"the legacy server is down", authconfig.Auth{Provider: authconfig.ProviderDovecot, Dovecot: authconfig.Dovecot{PasswdFile: filepath.Join(dir, "passwd")}, LegacyIMAP: configIMAP(gone)}, map[string]bool{"provider": true, "legacy imap": false}},
		{"the legacy server is up", authconfig.Auth{Provider: authconfig.ProviderDovecot, Dovecot: authconfig.Dovecot{PasswdFile: filepath.Join(dir, "passwd")}, LegacyIMAP: configIMAP(up)}, map[string]bool{"provider": true, "legacy imap": true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checks := peerChecks(tt.a)
			if len(checks) != len(tt.want) {
				t.Errorf("%d checks, want %d", len(checks), len(tt.want))
			}
			for name, ok := range tt.want {
				check, found := checks[name]
				if !found {
					t.Errorf("no %s check", name)
					continue
				}
				if err := check(context.Background()); (err == nil) != ok {
					t.Errorf("%s: %v, want passing %v", name, err, ok)
				}
			}
		})
	}
}

func configIMAP(addr string) config.IMAP { return config.IMAP{Address: addr} }
