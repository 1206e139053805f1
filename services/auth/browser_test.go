package auth

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/mailferry/mailferry/services/auth/internal/authtest"
	"github.com/mailferry/mailferry/shared/broker"
	"github.com/mailferry/mailferry/shared/config"
)

// TestBrowserChangesPasswordOnThePage drives the pages in Debian's
// headless Chromium: sign in, follow the notice, meet a policy error,
// change the password, and check the new provider (a real Dovecot)
// accepts it. It saves screenshots of the notice, the policy error and the result.
func TestBrowserChangesPasswordOnThePage(t *testing.T) {
	chromium := authtest.RequireChromium(t)
	target := authtest.Dovecot(t, nil)
	const (
		user    = "frank@example.org"
		oldPw   = "Secret#2024"
		newPw   = "Sunny-Meadow-42!"
		oldHash = "{SHA512-CRYPT}$6$gsXZXOgJ9AcCQ7Go$icKZYUWiKoh6I98YIyzZc5X9NK7BwnwiiE9RUzAtrwBo1xBIBoGYW0XrbFO8NmWIrGMUnNI1qA/tU8e4XCs5u1"
	)
	base := startService(t, authtest.PasswdPath(target), "email,role,legacy_hash\n"+user+",email-only,"+oldHash+"\n")

	ctx := browserContext(t, chromium)

	// The browser lives as long as the context of the first call: the
	// whole test, at most 90 s.
	if err := chromedp.Do(ctx,
		chromedp.Navigate(base+"/login"),
		chromedp.WaitVisible(chromedp.ID("email")),
		chromedp.SendKeys(chromedp.ID("email"), user),
		chromedp.SendKeys(chromedp.ID("password"), oldPw),
		chromedp.Click(chromedp.ID("submit")),
		chromedp.WaitVisible(chromedp.ID("notice")),
	); err != nil {
		t.Fatalf("sign in: %v", err)
	}
	if notice := text(t, ctx, "notice"); !strings.Contains(notice, "Action needed: update your password") {
		t.Fatalf("notice %q", notice)
	}
	shotNotice := screenshot(t, ctx)

	if err := chromedp.Do(ctx,
		chromedp.Click(chromedp.ID("change-link")),
		chromedp.WaitVisible(chromedp.ID("new_password")),
		fill(user, oldPw, "sunny", "sunny"),
		chromedp.WaitVisible(chromedp.ID("error")),
	); err != nil {
		t.Fatalf("weak password: %v", err)
	}
	policyErr := text(t, ctx, "error")
	for _, want := range []string{"The new password must be at least 10 characters long.", "The new password must contain a digit.",
		"The new password must contain an upper-case letter.", "The new password must contain a symbol"} {
		if !strings.Contains(policyErr, want) {
			t.Errorf("policy error %q lacks %q", policyErr, want)
		}
	}
	shotPolicy := screenshot(t, ctx)

	if err := chromedp.Do(ctx,
		chromedp.Clear(chromedp.ID("email")),
		fill(user, oldPw, newPw, newPw),
		chromedp.WaitVisible(chromedp.ID("done")),
	); err != nil {
		t.Fatalf("change: %v", err)
	}
	if done := text(t, ctx, "done"); !strings.Contains(done, "Your password has been changed.") {
		t.Fatalf("result %q", done)
	}
	shotDone := screenshot(t, ctx)
	saveScreenshot(t, "auth-signin-notice.png", shotNotice)
	saveScreenshot(t, "auth-policy-error.png", shotPolicy)
	saveScreenshot(t, "auth-password-changed.png", shotDone)

	if err := authtest.IMAPLogin(target.Addr, user, newPw); err != nil {
		t.Fatalf("IMAP login at the new provider with the new password: %v", err)
	}
	if err := authtest.IMAPLogin(target.Addr, user, oldPw); !authtest.IsRefusal(err) {
		t.Fatalf("IMAP login at the new provider with the old password: %v, want a refusal", err)
	}
}

// fill types the change form and submits it.
func fill(email, current, newPw, confirm string) chromedp.Action[chromedp.Void] {
	return chromedp.Steps(
		chromedp.SendKeys(chromedp.ID("email"), email),
		chromedp.SendKeys(chromedp.ID("current_password"), current),
		chromedp.SendKeys(chromedp.ID("new_password"), newPw),
		chromedp.SendKeys(chromedp.ID("confirm_password"), confirm),
		chromedp.Click(chromedp.ID("submit")),
	)
}

func text(t *testing.T, ctx context.Context, id string) string {
	t.Helper()
	s, err := chromedp.Run(ctx, chromedp.Text(chromedp.ID(id)))
	if err != nil {
		t.Fatalf("text of #%s: %v", id, err)
	}
	return s
}

func screenshot(t *testing.T, ctx context.Context) []byte {
	t.Helper()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	return png
}

// saveScreenshot writes a PNG to the test's directory and, when
// MAILFERRY_SCREENSHOT_DIR is set, there too.
func saveScreenshot(t *testing.T, name string, png []byte) {
	t.Helper()
	dirs := []string{t.TempDir()}
	if d := os.Getenv("MAILFERRY_SCREENSHOT_DIR"); d != "" {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		dirs = append(dirs, d)
	}
	for _, d := range dirs {
		p := filepath.Join(d, name)
		if err := os.WriteFile(p, png, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("screenshot: %s", p)
	}
}

// startService imports users, provisions them into passwd and serves the
// pages on a free loopback port until the test ends; it returns the base
// URL.
// startService imports usersCSV, provisions, and runs the auth service
// on a free port with the Dovecot target on passwd; dovecotExtra is
// added to the dovecot section. It returns the base URL.
func startService(t *testing.T, passwd, usersCSV string, dovecotExtra ...string) string {
	t.Helper()
	return startServiceWith(t, fmt.Sprintf("provider: dovecot, dovecot: {passwd_file: %s%s}", passwd, strings.Join(dovecotExtra, "")), usersCSV)
}

// startServiceWith is startService with target, the provider's part of
// the auth section.
func startServiceWith(t *testing.T, target, usersCSV string) string {
	t.Helper()
	cfg := authtest.Config(t, fmt.Sprintf("auth: {listen: 127.0.0.1:0, %s, argon2: {time: 1, memory_kib: 1024}}\n", target))
	b := authtest.Broker(t, cfg)
	logs := authtest.NewLogSink(t)
	ctx := authtest.Context(t, 3*time.Minute)
	if _, err := Import(ctx, cfg, b, strings.NewReader(usersCSV)); err != nil {
		t.Fatal(err)
	}
	if _, err := Provision(ctx, cfg, b, logs.Logger()); err != nil {
		t.Fatal(err)
	}
	return serveAuth(t, ctx, cfg, b, logs)
}

// serveAuth runs the auth service of cfg until the test ends and returns
// its base URL.
func serveAuth(t *testing.T, ctx context.Context, cfg *config.Config, b *broker.Broker, logs *authtest.LogSink) string {
	t.Helper()
	svcCtx, stop := context.WithCancel(ctx)
	ready := make(chan string, 1)
	done := make(chan error, 1)
	svc := &Service{Config: cfg, Broker: b, Log: logs.Logger(), Ready: func(addr string) { ready <- addr }}
	go func() { done <- svc.Run(svcCtx) }()
	t.Cleanup(func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("auth service: %v", err)
		}
	})
	select {
	case addr := <-ready:
		return "http://" + addr
	case err := <-done:
		t.Fatalf("auth service stopped: %v", err)
	case <-ctx.Done():
		t.Fatal("auth service did not start")
	}
	return ""
}

// browserContext starts headless Chromium for the test (at most 90 s).
func browserContext(t *testing.T, chromium string) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-quic", true),
		chromedp.WindowSize(800, 900),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	bctx, cancelBrowser := chromedp.NewContext(actx)
	ctx, cancel := context.WithTimeout(bctx, 90*time.Second)
	t.Cleanup(func() { cancel(); cancelBrowser(); cancelAlloc() })
	return ctx
}
