package metrics

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/mailferry/mailferry/shared/testenv/configtest"
	"github.com/mailferry/mailferry/shared/testenv/tlstest"
)

func TestTheSettingsRefuseAnEndpointWithoutAuthenticationAndBeyondLoopbackWithoutTLS(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want string // "" when accepted
	}{
		{"no section: no listener", "", ""},
		{"loopback v4", "metrics: {listen: 127.0.0.1:9464, user: prom, password_file: pw}", ""},
		{"loopback v6", "metrics: {listen: '[::1]:9464', user: prom, password_file: pw}", ""},
		{"localhost", "metrics: {listen: 'localhost:9464', user: prom, password_file: pw}", ""},
		{"loopback without auth", "metrics: {listen: 127.0.0.1:9464}", "every listener requires authentication"},
		{"all interfaces", "metrics: {listen: ':9464', user: prom, password_file: pw}", "not a loopback address"},
		{"a LAN address", "metrics: {listen: '10.0.0.5:9464', user: prom, password_file: pw}", "not a loopback address"},
		{"TLS without auth", "metrics: {listen: '0.0.0.0:9464', cert_file: c.pem, key_file: k.pem}", "every listener requires authentication"},
		{"auth without TLS", "metrics: {listen: '0.0.0.0:9464', user: prom, password_file: pw}", "not a loopback address"},
		{"TLS and auth", "metrics: {listen: '0.0.0.0:9464', cert_file: c.pem, key_file: k.pem, user: prom, password_file: pw}", ""},
		{"half a key pair", "metrics: {listen: 127.0.0.1:9464, user: prom, password_file: pw, cert_file: c.pem}", "cert_file and key_file go together"},
		{"a user without password", "metrics: {listen: 127.0.0.1:9464, user: prom}", "user and password_file go together"},
		{"an unknown key", "metrics: {listen: 127.0.0.1:9464, port: 9}", "field port not found"},
		{"no port", "metrics: {listen: 127.0.0.1, user: prom, password_file: pw}", "missing port"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := LoadSettings(configtest.Parse(t, tt.yaml))
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("refused: %v", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Errorf("error %v, want one saying %q", err, tt.want)
			}
		})
	}
}

func TestTheSettingsPathsAreResolvedAgainstTheFilesDirectory(t *testing.T) {
	cfg := configtest.Parse(t, "metrics: {listen: 127.0.0.1:0, user: prom, password_file: pw}")
	s, err := LoadSettings(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(cfg.Dir, "pw"); s.PasswordFile != want {
		t.Errorf("password_file %q, want %q", s.PasswordFile, want)
	}
}

func TestServeWithoutListenOpensNothing(t *testing.T) {
	srv, err := Serve(Settings{}, New(), zerolog.Nop())
	if srv != nil || err != nil {
		t.Errorf("Serve = %v, %v; want no server and no error", srv, err)
	}
	if err := srv.Close(context.Background()); err != nil {
		t.Errorf("closing no server: %v", err)
	}
}

// testPassword is the basic-auth password of the servers serve starts
// without credentials of their own (user "prom").
const testPassword = "a-test-password"

// serve starts a server on a free loopback port, closed with the test.
func serve(t *testing.T, s Settings, m *Metrics) *Server {
	t.Helper()
	if s.Listen == "" {
		s.Listen = "127.0.0.1:0"
	}
	if s.User == "" {
		s.User, s.PasswordFile = "prom", filepath.Join(t.TempDir(), "pw")
		if err := os.WriteFile(s.PasswordFile, []byte(testPassword+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	srv, err := Serve(s, m, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := srv.Close(context.Background()); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return srv
}

// get fetches path from srv and returns the status and body.
func get(t *testing.T, c *http.Client, url string, user, password string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if user != "" {
		req.SetBasicAuth(user, password)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

func TestTheEndpointsAnswerHealthReadinessAndMetrics(t *testing.T) {
	m := New()
	var brokerDown error
	m.AddReady("broker", func(context.Context) error { return brokerDown })
	srv := serve(t, Settings{}, m)
	base := "http://" + srv.Addr().String()

	m.Extracted(3)
	m.Appended(2, 2048)
	m.DeadLettered()
	m.Retried("loader")
	m.DNSUpdate("switched")
	m.SignIn("ok")
	m.PasswordChange("policy")
	m.Lockout()
	m.IMAP("source").Command("UID FETCH", 20*time.Millisecond)
	m.IMAP("source").Command("XYZZY", time.Millisecond)

	for _, path := range []string{"/healthz", "/readyz", "/metrics"} {
		if code, _ := get(t, http.DefaultClient, base+path, "", ""); code != http.StatusUnauthorized {
			t.Errorf("%s without credentials: %d, want 401", path, code)
		}
	}
	if code, body := get(t, http.DefaultClient, base+"/healthz", "prom", testPassword); code != 200 || body != "ok\n" {
		t.Errorf("/healthz: %d %q, want 200 ok", code, body)
	}
	if code, body := get(t, http.DefaultClient, base+"/readyz", "prom", testPassword); code != 200 {
		t.Errorf("/readyz: %d %q, want 200", code, body)
	}
	code, body := get(t, http.DefaultClient, base+"/metrics", "prom", testPassword)
	if code != 200 {
		t.Fatalf("/metrics: %d", code)
	}
	for _, want := range []string{
		"mailferry_messages_extracted_total 3",
		"mailferry_messages_appended_total 2",
		"mailferry_bytes_appended_total 2048",
		"mailferry_dead_letters_total 1",
		`mailferry_retries_total{service="loader"} 1`,
		`mailferry_dns_updates_total{outcome="switched"} 1`,
		`mailferry_auth_signins_total{outcome="ok"} 1`,
		`mailferry_auth_password_changes_total{outcome="policy"} 1`,
		"mailferry_auth_lockouts_total 1",
		`mailferry_imap_command_duration_seconds_count{command="UID FETCH",server="source"} 1`,
		`mailferry_imap_command_duration_seconds_count{command="OTHER",server="source"} 1`,
		"go_goroutines ",
		"mailferry_ready 1",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}

	brokerDown = errors.New("connection reconnecting")
	if code, body := get(t, http.DefaultClient, base+"/readyz", "prom", testPassword); code != 503 || !strings.Contains(body, "broker: connection reconnecting") {
		t.Errorf("/readyz with the broker down: %d %q, want 503 naming the broker", code, body)
	}
}

func TestReadinessReportsAnIMAPServerWhoseLastDialFailed(t *testing.T) {
	m := New()
	o := m.IMAP("target")
	o.Dialed(errors.New("dial tcp 127.0.0.1:1: connection refused"))
	if err := m.Ready(context.Background()); err == nil || !strings.Contains(err.Error(), "imap target: last dial failed") {
		t.Errorf("Ready = %v, want the target's failed dial", err)
	}
	o.Dialed(nil)
	if err := m.Ready(context.Background()); err != nil {
		t.Errorf("Ready after a good dial = %v, want nil", err)
	}
}

func TestANilMetricsCountsNothingAndIsReady(t *testing.T) {
	var m *Metrics
	m.Extracted(1)
	m.Appended(1, 1)
	m.DeadLettered()
	m.Retried("x")
	m.DNSUpdate("x")
	m.SignIn("x")
	m.PasswordChange("x")
	m.Lockout()
	m.AddReady("x", nil)
	m.WatchConsumer(nil, "S", "c")
	if o := m.IMAP("source"); o != nil {
		t.Errorf("IMAP of nil metrics = %v, want nil", o)
	}
	if err := m.Ready(context.Background()); err != nil {
		t.Errorf("Ready = %v", err)
	}
}

func TestBasicAuthOverTLSRefusesAWrongPassword(t *testing.T) {
	dir := t.TempDir()
	cert, key, pool := tlstest.SelfSigned(t, dir)
	pw := filepath.Join(dir, "metrics.pw")
	if err := os.WriteFile(pw, []byte("s3cret-metrics\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	srv := serve(t, Settings{CertFile: cert, KeyFile: key, User: "prom", PasswordFile: pw}, New())
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
	url := "https://" + srv.Addr().String()
	tests := []struct {
		name, path, user, password string
		code                       int
	}{
		{"right password", "/metrics", "prom", "s3cret-metrics", 200},
		{"wrong password", "/metrics", "prom", "guess", 401},
		{"wrong user", "/metrics", "admin", "s3cret-metrics", 401},
		{"no credentials", "/metrics", "", "", 401},
		{"health needs them too", "/healthz", "", "", 401},
		{"readiness needs them too", "/readyz", "prom", "guess", 401},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, body := get(t, c, url+tt.path, tt.user, tt.password)
			if code != tt.code {
				t.Errorf("%s: %d, want %d", tt.path, code, tt.code)
			}
			if strings.Contains(body, "s3cret") {
				t.Errorf("the answer shows the password: %q", body)
			}
		})
	}
	// Plain HTTP is not served on the TLS port.
	resp, err := http.Get("http://" + srv.Addr().String() + "/healthz")
	if err == nil {
		resp.Body.Close()
		if resp.StatusCode == 200 {
			t.Error("plain HTTP answered 200 on the TLS listener")
		}
	}
}

func TestServeRefusesAPasswordFileOthersMayRead(t *testing.T) {
	dir := t.TempDir()
	cert, key, _ := tlstest.SelfSigned(t, dir)
	pw := filepath.Join(dir, "metrics.pw")
	if err := os.WriteFile(pw, []byte("s3cret\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	srv, err := Serve(Settings{Listen: "127.0.0.1:0", CertFile: cert, KeyFile: key, User: "prom", PasswordFile: pw}, New(), zerolog.Nop())
	if err == nil {
		_ = srv.Close(context.Background())
		t.Fatal("served with a password file of mode 0644")
	}
	if !strings.Contains(err.Error(), "chmod 600") || strings.Contains(err.Error(), "s3cret") {
		t.Errorf("error %q, want one asking for chmod 600 without the password", err)
	}
}

func TestServeRefusesAListenerWithoutAuthentication(t *testing.T) {
	srv, err := Serve(Settings{Listen: "127.0.0.1:0"}, New(), zerolog.Nop())
	if err == nil {
		_ = srv.Close(context.Background())
		t.Fatal("listening on loopback without authentication")
	}
	if !strings.Contains(err.Error(), "requires authentication") {
		t.Errorf("error %q, want it to ask for user and password_file", err)
	}
}

func TestServeRefusesANonLoopbackAddressWithoutTLS(t *testing.T) {
	srv, err := Serve(Settings{Listen: "0.0.0.0:0", User: "prom", PasswordFile: "pw"}, New(), zerolog.Nop())
	if err == nil {
		_ = srv.Close(context.Background())
		t.Fatal("listening on all interfaces without TLS")
	}
	if !strings.Contains(err.Error(), "not a loopback address") {
		t.Errorf("error %q, want it to say the address is not loopback", err)
	}
}
