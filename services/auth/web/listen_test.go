package web

import (
	"context"
	"crypto/tls"
	"net/http"
	"testing"
	"time"

	"github.com/mailferry/mailferry/services/auth/authconfig"
	"github.com/mailferry/mailferry/shared/testenv/tlstest"
)

func TestTLSListenerServesModernTLSOnly(t *testing.T) {
	certFile, keyFile, pool := tlstest.SelfSigned(t, t.TempDir())
	ln, err := Listen(authconfig.Auth{Listen: "127.0.0.1:0", TLS: authconfig.TLS{CertFile: certFile, KeyFile: keyFile, MinVersion: "1.2"}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Serve(ctx, ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Write([]byte(r.Proto))
		}), time.Second)
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	}()
	url := "https://" + ln.Addr().String() + "/"
	modern := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: true}}
	res, err := modern.Get(url)
	if err != nil {
		t.Fatalf("TLS 1.2+ client: %v", err)
	}
	res.Body.Close()
	if res.TLS == nil || res.TLS.Version < tls.VersionTLS12 || res.Proto != "HTTP/2.0" {
		t.Fatalf("connection %v %s", res.TLS, res.Proto)
	}
	old := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MaxVersion: tls.VersionTLS11, MinVersion: tls.VersionTLS10}}}
	if _, err := old.Get(url); err == nil {
		t.Fatal("a TLS 1.1 client was served")
	}
	if res, err := http.Get("http://" + ln.Addr().String() + "/"); err == nil && res.StatusCode == http.StatusOK {
		t.Fatal("plain HTTP was served on the TLS port")
	}
}

// TestTLS12OffersOnlyForwardSecretAEADSuites: a TLS 1.2 client that
// offers only CBC or SHA-1 suites is refused; the AEAD suites work.
func TestTLS12OffersOnlyForwardSecretAEADSuites(t *testing.T) {
	certFile, keyFile, pool := tlstest.SelfSigned(t, t.TempDir()) // an ECDSA certificate
	ln, err := Listen(authconfig.Auth{Listen: "127.0.0.1:0", TLS: authconfig.TLS{CertFile: certFile, KeyFile: keyFile, MinVersion: "1.2"}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Serve(ctx, ln, http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}), time.Second)
	}()
	defer func() {
		cancel()
		<-done
	}()
	for _, tc := range []struct {
		suite uint16
		want  bool
	}{
		{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, true},
		{tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, true},
		{tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256, true},
		{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA, false},
		{tls.TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA, false},
		{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256, false},
		{tls.TLS_ECDHE_ECDSA_WITH_RC4_128_SHA, false},
	} {
		t.Run(tls.CipherSuiteName(tc.suite), func(t *testing.T) {
			c, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12, MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{tc.suite}})
			if err == nil {
				c.Close()
			}
			if (err == nil) != tc.want {
				t.Fatalf("handshake error %v, want success %v", err, tc.want)
			}
		})
	}
}
