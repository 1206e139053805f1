package auth

import (
	"encoding/json"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
)

// TestBcryptTargetRefusesPasswordsOver72BytesUpFront: with a Dovecot
// target writing BLF-CRYPT, a new password of 76 bytes is a policy error
// the user can fix (422), not a failure at the target (503).
func TestBcryptTargetRefusesPasswordsOver72BytesUpFront(t *testing.T) {
	const (
		user  = "gina@example.org"
		oldPw = "Secret#2024"
		hash  = "{SHA512-CRYPT}$6$gsXZXOgJ9AcCQ7Go$icKZYUWiKoh6I98YIyzZc5X9NK7BwnwiiE9RUzAtrwBo1xBIBoGYW0XrbFO8NmWIrGMUnNI1qA/tU8e4XCs5u1"
	)
	base := startService(t, filepath.Join(t.TempDir(), "passwd"), "email,role,legacy_hash\n"+user+",email-only,"+hash+"\n", ", scheme: BLF-CRYPT")
	for _, tc := range []struct {
		name, newPw string
		want        int
	}{
		{"76 bytes", "Long-Passw0rd-" + strings.Repeat("x", 62), http.StatusUnprocessableEntity},
		{"72 bytes", "Long-Passw0rd-" + strings.Repeat("x", 58), http.StatusOK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body, _ := json.Marshal(map[string]string{"email": user, "current_password": oldPw, "new_password": tc.newPw})
			res, err := http.Post(base+"/api/v1/password", "application/json", strings.NewReader(string(body)))
			if err != nil {
				t.Fatal(err)
			}
			defer res.Body.Close()
			var out struct {
				Policy []string `json:"policy"`
			}
			json.NewDecoder(res.Body).Decode(&out)
			if res.StatusCode != tc.want {
				t.Fatalf("%s: %s %v, want %d", tc.name, res.Status, out, tc.want)
			}
			if tc.want == http.StatusUnprocessableEntity && (len(out.Policy) != 1 || !strings.Contains(out.Policy[0], "at most 72 bytes")) {
				t.Fatalf("policy reasons %q", out.Policy)
			}
		})
	}
}
