package bindkey

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/miekg/dns"
)

const secret = "c2VjcmV0LXRoYXQtbXVzdC1uZXZlci1iZS1wcmludGVk"

func TestParseReadsTheKeyTsigKeygenWrites(t *testing.T) {
	text := `key "dnsctl-key" {
	algorithm hmac-sha256;
	secret "` + secret + `";
};
`
	keys, err := Parse(text)
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 1 {
		t.Fatalf("got %d keys, want 1", len(keys))
	}
	k := keys[0]
	if k.Name != "dnsctl-key." || k.Algorithm != dns.HmacSHA256 || k.Secret() != secret {
		t.Errorf("got %s with secret %t, want dnsctl-key. hmac-sha256", k, k.Secret() == secret)
	}
}

func TestParseSkipsCommentsAndOtherStatements(t *testing.T) {
	text := `# generated
options { directory "/x"; listen-on { 127.0.0.1; }; };
/* two keys */
key xfr-key { algorithm "HMAC-SHA512"; secret "` + secret + `"; }; // trailing
key "Upper.Key." { algorithm hmac-sha1; secret "` + secret + `"; };
`
	keys, err := Parse(text)
	if err != nil {
		t.Fatal(err)
	}
	got := []string{}
	for _, k := range keys {
		got = append(got, k.Name+" "+k.Algorithm)
	}
	want := []string{"xfr-key. " + dns.HmacSHA512, "upper.key. " + dns.HmacSHA1}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("got %v, want %v", got, want)
	}
}

func TestParseRejectsBrokenFilesWithoutQuotingTheSecret(t *testing.T) {
	tests := []struct {
		name, text, want string
	}{
		{"no key", `options { };`, "no key statement"},
		{"missing algorithm", `key k { secret "` + secret + `"; };`, "needs algorithm and secret"},
		{"unknown algorithm", `key k { algorithm hmac-sha3; secret "` + secret + `"; };`, "unsupported algorithm"},
		{"fields swapped", `key k { algorithm "` + secret + `"; secret hmac-sha256; };`, "unsupported algorithm"},
		{"secret not base64", `key k { algorithm hmac-sha256; secret "` + secret + `!!"; };`, "not base64"},
		{"missing semicolon", `key k { algorithm hmac-sha256; secret "` + secret + `" };`, `want ";"`},
		{"unterminated string", `key k { algorithm hmac-sha256; secret "` + secret, "unterminated quoted string"},
		{"unterminated block", `key k { algorithm hmac-sha256; secret "` + secret + `";`, "unexpected end of file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse(tt.text)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want it to say %q", err, tt.want)
			}
			if strings.Contains(err.Error(), secret[:12]) {
				t.Errorf("error leaks the secret: %v", err)
			}
		})
	}
}

func TestReadFilePicksTheNamedKey(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys.conf")
	text := `key a { algorithm hmac-sha256; secret "` + secret + `"; };
key b { algorithm hmac-sha512; secret "` + secret + `"; };`
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadFile(path, ""); err == nil || !strings.Contains(err.Error(), "name the one to use") {
		t.Errorf("no name with two keys: err = %v", err)
	}
	k, err := ReadFile(path, "B")
	if err != nil {
		t.Fatal(err)
	}
	if k.Name != "b." || k.Algorithm != dns.HmacSHA512 {
		t.Errorf("got %s, want b. hmac-sha512", k)
	}
	if _, err := ReadFile(path, "c"); err == nil || !strings.Contains(err.Error(), "no key named c.") {
		t.Errorf("unknown name: err = %v", err)
	}
}

func TestReadFileRefusesAKeyFileOthersMayRead(t *testing.T) {
	path := filepath.Join(t.TempDir(), "dnsctl.key")
	if err := os.WriteFile(path, []byte(`key k { algorithm hmac-sha256; secret "`+secret+`"; };`), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, mode := range []os.FileMode{0o640, 0o604, 0o644} {
		if err := os.Chmod(path, mode); err != nil {
			t.Fatal(err)
		}
		_, err := ReadFile(path, "")
		if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("mode %04o", mode)) || !strings.Contains(err.Error(), path) {
			t.Errorf("mode %04o: err = %v, want a refusal naming the file and its mode", mode, err)
		}
		if err != nil && strings.Contains(err.Error(), secret[:12]) {
			t.Errorf("error leaks the secret: %v", err)
		}
	}
	if err := os.Chmod(path, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadFile(path, ""); err != nil {
		t.Errorf("mode 0600: %v", err)
	}
}

func TestKeyFormatsWithoutItsSecret(t *testing.T) {
	k, err := New("k", "hmac-sha256", secret)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"%v", "%+v", "%#v", "%s"} {
		if out := fmt.Sprintf(f, k); strings.Contains(out, secret) {
			t.Errorf("%s prints the secret: %s", f, out)
		}
	}
}
