package auth

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/mailferry/mailferry/services/auth/testenv/omafake"
)

// TestOpenSRSRulesAreShownUpFrontAndAllRefusedAtOnce runs the service
// with the opensrs target against the stand-in: the change page lists
// OpenSRS's rules, and the API names every broken one in its first
// answer, so a 60-character password never reaches the provider.
func TestOpenSRSRulesAreShownUpFrontAndAllRefusedAtOnce(t *testing.T) {
	const (
		user  = "joanna@example.org"
		oldPw = "Secret#2024"
		hash  = "{SHA512-CRYPT}$6$gsXZXOgJ9AcCQ7Go$icKZYUWiKoh6I98YIyzZc5X9NK7BwnwiiE9RUzAtrwBo1xBIBoGYW0XrbFO8NmWIrGMUnNI1qA/tU8e4XCs5u1"
	)
	fake := omafake.Start(t)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "ca.pem"), fake.CAPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "oma.pw"), []byte(omafake.Password), 0o600); err != nil {
		t.Fatal(err)
	}
	base := startServiceWith(t, fmt.Sprintf("provider: opensrs, opensrs: {url: %q, user: %s, password_file: %s, ca_file: %s}",
		fake.URL+"/api", omafake.Admin, filepath.Join(dir, "oma.pw"), filepath.Join(dir, "ca.pem")),
		"email,role,legacy_hash\n"+user+",email-only,"+hash+"\n")

	res, err := http.Get(base + "/password")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(res.Body)
	res.Body.Close()
	for _, rule := range []string{"10 to 54 characters", "only letters A-Z and a-z, digits and the symbols on a US keyboard (no spaces, no &#34;)", "not containing your mailbox name or your domain"} {
		if !strings.Contains(string(page), rule) {
			t.Fatalf("the change page does not state %q:\n%s", rule, page)
		}
	}

	before := len(fake.Requests())
	for _, tc := range []struct {
		name, newPw string
		want        []string
	}{
		{"60 characters", "Aa1!" + strings.Repeat("x", 56), []string{"must be at most 54 characters long"}},
		{"mailbox name and a space", "Hi JOANNA-2024", []string{"must contain only letters", "must not contain your mailbox name"}},
		{"a quote", `Zebra"Crossing-42`, []string{"must contain only letters"}},
		{"non-ASCII", "Zébra-Crossing-42", []string{"must contain only letters"}},
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
			if res.StatusCode != http.StatusUnprocessableEntity || len(out.Policy) != len(tc.want) {
				t.Fatalf("%s %q, want 422 with %q", res.Status, out.Policy, tc.want)
			}
			for i, w := range tc.want {
				if !strings.HasPrefix(out.Policy[i], w) {
					t.Fatalf("reasons %q, want %q", out.Policy, tc.want)
				}
			}
		})
	}
	if slices.Contains(fake.Requests()[before:], "change_user") {
		t.Fatal("a refused password reached the provider")
	}
	body, _ := json.Marshal(map[string]string{"email": user, "current_password": oldPw, "new_password": "Zebra-Crossing-42"})
	res, err = http.Post(base+"/api/v1/password", "application/json", strings.NewReader(string(body)))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if pw, _ := fake.UserPassword(user); res.StatusCode != http.StatusOK || pw != "Zebra-Crossing-42" {
		t.Fatalf("acceptable password: %s, provider holds the new one: %v", res.Status, pw == "Zebra-Crossing-42")
	}
}
