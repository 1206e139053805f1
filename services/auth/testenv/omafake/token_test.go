package omafake

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// post calls method with body and decodes the answer.
func post(t *testing.T, f *Server, method, body string) map[string]any {
	t.Helper()
	res, err := f.Client().Post(f.URL+"/api/"+method, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var out map[string]any
	if err := json.NewDecoder(res.Body).Decode(&out); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestGenerateTokenAnswersAsDocumentedAndFeedsTheIMAPTarget(t *testing.T) {
	f := Start(t, "example.org")
	var valid map[string]string
	f.OnTokens = func(v map[string]string) { valid = v }
	post(t, f, "change_user", `{`+creds+`, "user": "a@example.org", "attributes": {"password": "Xy7-kkkkkkkk"}}`)
	tests := []struct {
		name, body   string
		wantDuration float64
		wantToken    string // "" : random
		mailLogin    bool   // handed to the IMAP target
	}{
		{"defaults: session, 24 hours", `"reason": "r"`, 24, "", true},
		{"duration and type", `"reason": "r", "type": "session", "duration": 2`, 2, "", true},
		{"token given", `"reason": "r", "token": "chosen-token"`, 24, "chosen-token", true},
		{"oma token: not for mail", `"reason": "r", "type": "oma"`, 24, "", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			valid = nil
			out := post(t, f, "generate_token", `{`+creds+`, "user": "a@example.org", `+tc.body+`}`)
			tok, _ := out["token"].(string)
			if out["success"] != true || out["duration"] != tc.wantDuration || tok == "" || (tc.wantToken != "" && tok != tc.wantToken) {
				t.Fatalf("answer %v", out)
			}
			if got := valid["a@example.org"] == tok; got != tc.mailLogin {
				t.Errorf("IMAP target told the token: %v, want %v", got, tc.mailLogin)
			}
		})
	}
}

func TestATokenStopsWorkingAfterItsHoursAndOnlyAnOMATokenOpensTheOMA(t *testing.T) {
	f := Start(t, "example.org")
	f.Hour = 300 * time.Millisecond
	told := make(chan map[string]string, 10)
	f.OnTokens = func(v map[string]string) { told <- v }
	post(t, f, "change_user", `{`+creds+`, "user": "a@example.org", "attributes": {"password": "Xy7-kkkkkkkk"}}`)
	out := post(t, f, "generate_token", `{`+creds+`, "user": "a@example.org", "reason": "r", "duration": 1}`)
	if v := <-told; v["a@example.org"] != out["token"] {
		t.Fatalf("issued token not handed to the target: %v", v)
	}
	select {
	case v := <-told:
		if _, ok := v["a@example.org"]; ok {
			t.Errorf("after its hour the token is still handed out: %v", v)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the expiry was never told")
	}

	admin := post(t, f, "generate_token", `{`+creds+`, "user": "`+Admin+`", "reason": "r", "type": "oma", "duration": 10}`)
	session := post(t, f, "generate_token", `{`+creds+`, "user": "`+Admin+`", "reason": "r", "type": "session", "duration": 10}`)
	for _, tc := range []struct {
		name   string
		token  any
		wantOK bool
	}{
		{"oma token", admin["token"], true},
		{"session token without oma", session["token"], false},
		{"unknown token", "nope", false},
	} {
		cred, _ := json.Marshal(map[string]any{"user": Admin, "token": tc.token})
		out := post(t, f, "generate_token", `{"credentials": `+string(cred)+`, "user": "a@example.org", "reason": "r"}`)
		if ok := out["success"] == true; ok != tc.wantOK || (!ok && out["error_number"] != float64(1)) {
			t.Errorf("%s as credentials: %v, want success %v (else error 1)", tc.name, out, tc.wantOK)
		}
	}
}
