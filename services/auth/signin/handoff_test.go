package signin

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/mailferry/mailferry/services/auth/internal/authtest"
)

// handOffs records what a Service hands off.
type handOffs struct {
	mu    sync.Mutex
	calls []string
}

func (h *handOffs) HandOff(_ context.Context, email, password string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.calls = append(h.calls, email+" "+password)
}

func (h *handOffs) got() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.calls)
}

func TestOnlyAProvenLegacyPasswordIsHandedOff(t *testing.T) {
	h := &handOffs{}
	f := newFixture(t, nil, "", func(o *Options) { o.HandOff = h })
	f.importUsers(t, map[string]string{"pat@example.org": legacyHashes["sha512@example.org"]})
	ctx := authtest.Context(t, time.Minute)
	const newPw = "Brand-new-Passw0rd!"

	if _, err := f.svc.Login(ctx, "pat@example.org", "wrong", "192.0.2.9"); err == nil {
		t.Fatal("a wrong password signed in")
	}
	if _, err := f.svc.ChangePassword(ctx, ChangeRequest{Email: "pat@example.org", CurrentPassword: "wrong", NewPassword: newPw, Client: "192.0.2.9"}); err == nil {
		t.Fatal("a wrong current password changed it")
	}
	if got := h.got(); len(got) != 0 {
		t.Fatalf("wrong passwords handed off: %q", got)
	}
	if _, err := f.svc.Login(ctx, "pat@example.org", legacyPassword, "192.0.2.9"); err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.ChangePassword(ctx, ChangeRequest{Email: "pat@example.org", CurrentPassword: legacyPassword, NewPassword: newPw, Client: "192.0.2.9"}); err != nil {
		t.Fatal(err)
	}
	want := []string{"pat@example.org " + legacyPassword, "pat@example.org " + legacyPassword}
	if got := h.got(); !slices.Equal(got, want) {
		t.Fatalf("handed off %q; want the legacy password at sign-in and on the change page", got)
	}
	// Now the current password is the new one, which the legacy server
	// does not know: never handed off.
	if _, err := f.svc.Login(ctx, "pat@example.org", newPw, "192.0.2.9"); err != nil {
		t.Fatal(err)
	}
	if got := h.got(); len(got) != 2 {
		t.Fatalf("the new password was handed off: %q", got)
	}
}
