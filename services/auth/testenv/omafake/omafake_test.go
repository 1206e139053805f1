package omafake

import (
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
)

// recorder is a testing.TB that records shape violations instead of
// failing, so the fake's own checks can be tested.
type recorder struct {
	testing.TB
	mu   sync.Mutex
	errs []string
}

func (r *recorder) Errorf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}

func (r *recorder) violations() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.errs...)
}

const (
	creds       = `"credentials": {"user": "` + Admin + `", "password": "` + Password + `", "client": "test"}`
	domainCreds = `"credentials": {"user": "` + DomainAdmin + `", "password": "` + Password + `"}`
)

func TestFakeChecksRequestsAgainstTheDocumentedShape(t *testing.T) {
	rec := &recorder{TB: t}
	f := Start(rec, "example.org")
	client := f.Client()
	for _, tc := range []struct {
		name, method, body string
		status             int
		errNum             int // -1: success
		violation          bool
	}{
		{"valid create", "change_user", `{` + creds + `, "user": "a@example.org", "attributes": {"password": "Xy7-kkkkkkkk"}, "create_only": true}`, 200, -1, false},
		{"exists", "change_user", `{` + creds + `, "user": "a@example.org", "attributes": {"password": "Xy7-kkkkkkkk"}, "create_only": true}`, 200, 7, false},
		{"wrong credentials", "change_user", `{"credentials": {"user": "` + Admin + `", "password": "nope"}, "user": "a@example.org", "attributes": {}}`, 200, 1, false},
		{"unknown attribute", "change_user", `{` + creds + `, "user": "a@example.org", "attributes": {"colour": "blue"}}`, 200, 6, false},
		{"missing attributes", "change_user", `{` + creds + `, "user": "a@example.org"}`, 200, 5, true},
		{"create_only as a string", "change_user", `{` + creds + `, "user": "a@example.org", "attributes": {}, "create_only": "yes"}`, 200, 5, true},
		{"undocumented field", "generate_token", `{` + creds + `, "user": "a@example.org", "reason": "r", "lifetime": 3}`, 200, 5, true},
		{"token for a missing user", "generate_token", `{` + creds + `, "user": "z@example.org", "reason": "r"}`, 200, 2, false},
		{"no credentials", "generate_token", `{"user": "a@example.org", "reason": "r"}`, 200, 5, true},
		{"password over 54 characters", "change_user", `{` + creds + `, "user": "b@example.org", "attributes": {"password": "` + strings.Repeat("Xy7-", 14) + `"}}`, 200, 6, false},
		{"password with a space", "change_user", `{` + creds + `, "user": "b@example.org", "attributes": {"password": "Xy7 kkkkkkkk"}}`, 200, 6, false},
		{"undocumented attribute delivery_mailbox", "change_user", `{` + creds + `, "user": "b@example.org", "attributes": {"delivery_mailbox": true}}`, 200, 6, false},
		{"existing domain", "get_domain", `{` + creds + `, "domain": "example.org"}`, 200, -1, false},
		{"missing domain", "get_domain", `{` + creds + `, "domain": "new.example"}`, 200, 2, false},
		{"domain as a list", "get_domain", `{` + creds + `, "domain": ["new.example"]}`, 200, 5, true},
		{"domain admin creates a domain", "change_domain", `{` + domainCreds + `, "domain": "new.example", "attributes": {}, "create_only": true}`, 200, 4, false},
		{"company admin creates a domain", "change_domain", `{` + creds + `, "domain": "new.example", "attributes": {}, "create_only": true}`, 200, -1, false},
		{"domain exists", "change_domain", `{` + creds + `, "domain": "new.example", "attributes": {}, "create_only": true}`, 200, 7, false},
		{"change_domain without attributes", "change_domain", `{` + creds + `, "domain": "new.example"}`, 200, 5, true},
		{"bad JSON", "change_user", `{"credentials": `, 400, 0, true},
		{"unknown method", "drop_everything", `{` + creds + `}`, 404, 0, false},
	} {
		before := len(rec.violations())
		res, err := client.Post(f.URL+"/api/"+tc.method, "application/json", strings.NewReader(tc.body))
		if err != nil {
			t.Fatal(err)
		}
		var out struct {
			Success     bool   `json:"success"`
			ErrorNumber int    `json:"error_number"`
			Error       string `json:"error"`
		}
		json.NewDecoder(res.Body).Decode(&out)
		res.Body.Close()
		if res.StatusCode != tc.status {
			t.Errorf("%s: HTTP %d, want %d", tc.name, res.StatusCode, tc.status)
		}
		if tc.status == 200 {
			if tc.errNum == -1 && !out.Success {
				t.Errorf("%s: %+v, want success", tc.name, out)
			}
			if tc.errNum >= 0 && (out.Success || out.ErrorNumber != tc.errNum || out.Error == "") {
				t.Errorf("%s: %+v, want error %d", tc.name, out, tc.errNum)
			}
		}
		if got := len(rec.violations()) > before; got != tc.violation {
			t.Errorf("%s: shape violation recorded = %v, want %v (%v)", tc.name, got, tc.violation, rec.violations())
		}
	}
	if pw, ok := f.UserPassword("a@example.org"); !ok || pw != "Xy7-kkkkkkkk" {
		t.Fatal("the valid create did not create the mailbox")
	}
}
