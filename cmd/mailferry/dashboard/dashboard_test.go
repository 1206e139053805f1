package dashboard_test

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/mailferry/mailferry/cmd/mailferry/dashboard"
	"github.com/mailferry/mailferry/cmd/mailferry/status"
	"github.com/mailferry/mailferry/shared/config"
	"github.com/mailferry/mailferry/shared/testenv/configtest"
)

func TestSettingsDefaultToLoopbackAndRefuseAnOpenListenerWithoutTLS(t *testing.T) {
	tests := []struct {
		name    string
		yaml    string
		want    string // listen
		wantErr string
	}{
		{"defaults", "", "127.0.0.1:9180", ""},
		{"loopback v6", "dashboard: {listen: '[::1]:9000'}", "[::1]:9000", ""},
		{"localhost", "dashboard: {listen: 'localhost:9000'}", "localhost:9000", ""},
		{"every address without TLS", "dashboard: {listen: ':9000'}", "", "not a loopback address"},
		{"a public address without TLS", "dashboard: {listen: '192.0.2.1:9000'}", "", "set cert_file and key_file"},
		{"a public address with TLS", "dashboard: {listen: '192.0.2.1:9000', cert_file: c.pem, key_file: k.pem}", "192.0.2.1:9000", ""},
		{"half of TLS", "dashboard: {cert_file: c.pem}", "", "both cert_file and key_file"},
		{"no port", "dashboard: {listen: '127.0.0.1'}", "", "dashboard.listen"},
		{"an unknown key", "dashboard: {listn: x}", "", "listn"},
		{"too short an interval", "dashboard: {interval: 1ms}", "", "dashboard.interval"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := dashboard.LoadSettings(configtest.Parse(t, tt.yaml))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if s.Listen != tt.want || s.User != dashboard.DefaultUser || filepath.Base(s.PasswordFile) != dashboard.PasswordFileName {
				t.Errorf("settings %+v", s)
			}
		})
	}
}

// served starts a dashboard on a loopback port with read as its state
// and returns its base URL and password.
func served(t *testing.T, ctx context.Context, read func(context.Context) (*dashboard.View, error)) (string, string) {
	t.Helper()
	dir := t.TempDir()
	pwFile := filepath.Join(dir, "dashboard.password")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &dashboard.Server{Read: read, Log: zerolog.Nop(), Settings: dashboard.Settings{Listen: ln.Addr().String(),
		User: dashboard.DefaultUser, PasswordFile: pwFile, Interval: config.Duration(50 * time.Millisecond)}}
	done := make(chan error, 1)
	ctx, cancel := context.WithCancel(ctx)
	go func() { done <- srv.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	var pw []byte
	for deadline := time.Now().Add(10 * time.Second); ; {
		if pw, err = os.ReadFile(pwFile); err == nil && len(pw) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no password file made: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if st, err := os.Stat(pwFile); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("password file %v mode %v, want 0600", err, st.Mode())
	}
	return "http://" + ln.Addr().String(), strings.TrimSpace(string(pw))
}

func get(t *testing.T, ctx context.Context, url, user, pw string) *http.Response {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if user != "" {
		req.SetBasicAuth(user, pw)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

func view(loaded int64) *dashboard.View {
	return &dashboard.View{Time: time.Date(2026, 12, 6, 8, 0, 0, 0, time.UTC),
		Status: &status.Status{Mailboxes: []status.Mailbox{{Mailbox: "a@example.com", Phase: status.PhaseLoading, Loaded: loaded, Total: 10}}},
		Dead:   []dashboard.DeadLetter{}, Failures: []dashboard.Failure{}}
}

func TestEveryPathNeedsTheDashboardsPassword(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	base, pw := served(t, ctx, func(context.Context) (*dashboard.View, error) { return view(1), nil })
	for _, path := range []string{"/", "/state.json", "/events"} {
		for _, tc := range []struct {
			name, user, pw string
		}{{"none", "", ""}, {"wrong password", dashboard.DefaultUser, pw + "x"}, {"wrong user", "root", pw}} {
			resp := get(t, ctx, base+path, tc.user, tc.pw)
			resp.Body.Close()
			if resp.StatusCode != http.StatusUnauthorized || !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Basic ") {
				t.Errorf("%s with %s: %s, want 401 with a Basic challenge", path, tc.name, resp.Status)
			}
		}
	}
	resp := get(t, ctx, base+"/", dashboard.DefaultUser, pw)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "mailferry migration") {
		t.Fatalf("page: %s\n%s", resp.Status, body)
	}
	csp := resp.Header.Get("Content-Security-Policy")
	if !strings.Contains(csp, "default-src 'none'") || strings.Contains(csp, "unsafe-inline") {
		t.Errorf("page's CSP %q: want default-src 'none' and the inline parts by hash only", csp)
	}
}

func TestTheEventStreamSendsTheStateAndEachChangeOfIt(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var loaded atomic.Int64
	loaded.Store(1)
	base, pw := served(t, ctx, func(context.Context) (*dashboard.View, error) { return view(loaded.Load()), nil })
	resp := get(t, ctx, base+"/events", dashboard.DefaultUser, pw)
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("content type %q", ct)
	}
	lines := bufio.NewScanner(resp.Body)
	lines.Buffer(make([]byte, 1<<20), 1<<20)
	next := func() *dashboard.View {
		t.Helper()
		for lines.Scan() {
			data, ok := strings.CutPrefix(lines.Text(), "data: ")
			if !ok {
				continue
			}
			var v dashboard.View
			if err := json.Unmarshal([]byte(data), &v); err != nil {
				t.Fatalf("event %q: %v", data, err)
			}
			return &v
		}
		t.Fatalf("stream ended: %v", lines.Err())
		return nil
	}
	if v := next(); v.Status.Mailboxes[0].Loaded != 1 {
		t.Fatalf("first event %+v, want 1 loaded", v.Status.Mailboxes[0])
	}
	loaded.Store(7)
	if v := next(); v.Status.Mailboxes[0].Loaded != 7 {
		t.Fatalf("second event %+v, want 7 loaded", v.Status.Mailboxes[0])
	}
}

func TestAFailedReadKeepsTheLastStateAndSaysWhy(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var broken atomic.Bool
	base, pw := served(t, ctx, func(context.Context) (*dashboard.View, error) {
		if broken.Load() {
			return nil, io.ErrUnexpectedEOF
		}
		return view(3), nil
	})
	state := func() *dashboard.View {
		resp := get(t, ctx, base+"/state.json", dashboard.DefaultUser, pw)
		defer resp.Body.Close()
		var v dashboard.View
		if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
			t.Fatal(err)
		}
		return &v
	}
	for deadline := time.Now().Add(5 * time.Second); state().Status == nil; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("no state")
		}
	}
	broken.Store(true)
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		v := state()
		if v.Error != "" {
			if v.Status == nil || v.Status.Mailboxes[0].Loaded != 3 {
				t.Errorf("failed read lost the last state: %+v", v)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the failed read was not shown")
		}
	}
}
