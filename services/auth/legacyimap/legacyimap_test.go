package legacyimap

import (
	"net"
	"strings"
	"testing"
	"time"

	"github.com/mailferry/mailferry/services/auth/internal/authtest"
	"github.com/mailferry/mailferry/shared/config"
)

func server(addr string) config.IMAP {
	return config.IMAP{Address: addr, TLS: config.TLSNone, Auth: config.AuthUser, Connections: 2,
		CommandTimeout: config.Duration(10 * time.Second), DialTimeout: config.Duration(5 * time.Second)}
}

func TestVerifyAgainstARealLegacyServer(t *testing.T) {
	const user, pw = "dave@legacy.example", "Old pass: with spaces & \"quotes\""
	srv := authtest.Dovecot(t, map[string]string{user: pw})
	v := New(server(srv.Addr))
	ctx := authtest.Context(t, time.Minute)
	for _, tc := range []struct {
		user, password string
		want           bool
	}{
		{user, pw, true},
		{user, pw + "x", false},
		{"nobody@legacy.example", pw, false},
	} {
		ok, err := v.Verify(ctx, tc.user, tc.password)
		if err != nil || ok != tc.want {
			t.Errorf("Verify(%s) = %v, %v; want %v", tc.user, ok, err, tc.want)
		}
	}
}

func TestVerifyReportsAnUnreachableServerAsAnError(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	ok, err := New(server(addr)).Verify(authtest.Context(t, 30*time.Second), "u@example.org", "Secret-123!")
	if ok || err == nil {
		t.Fatalf("Verify = %v, %v; want an error", ok, err)
	}
	if strings.Contains(err.Error(), "Secret-123!") {
		t.Fatalf("error quotes the password: %v", err)
	}
}
