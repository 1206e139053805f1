package passhash

import (
	"encoding/base64"
	"encoding/hex"
	"errors"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"
)

// doveadmPassword is the password of every hash in doveadmHashes, which
// `doveadm pw -s SCHEME -p 'Secret#2024'` (Dovecot 2.3.19) printed.
const doveadmPassword = "Secret#2024"

var doveadmHashes = []string{
	"{SHA512-CRYPT}$6$gsXZXOgJ9AcCQ7Go$icKZYUWiKoh6I98YIyzZc5X9NK7BwnwiiE9RUzAtrwBo1xBIBoGYW0XrbFO8NmWIrGMUnNI1qA/tU8e4XCs5u1",
	"{SHA256-CRYPT}$5$VcK6s4idVEpHMEny$RiXuP.4ODJbG8J0TmY25FBZtB8C/NekPxuhRPsIPbQC",
	"{MD5-CRYPT}$1$KNgGc/O0$qtMl.YOs4dk82L22h9qbN1",
	"{BLF-CRYPT}$2y$05$BY6T1kxINzvRGT0ckyBSbua/r3ivx4I27uHPE7W7f3iq7OpKykTdW",
	"{CRYPT}$2y$05$V.bqVaIlao.tpwI6GC32zuXnuoXaSm9.IoxqX36w3YsTXvoBiPbyO",
	"{SSHA}9QgVRMQV4kKPlslxLyqNpON0ROwCgX27",
	"{SSHA256}w9meGhSQSmGkznQqF+EdljJv/DQTkKw09npOo3EvABpZRro+",
	"{SSHA512}snBiH73B5mOd234EAAMW/saHKREXmn977Vv1yhEZxxgRERP/amLqHhVcbBAArsBxpxxY3fJiLUYUZQziXFi4e3AhXTg=",
	"{SSHA256.HEX}91f7365be9e5e480967c4b3725b959b2939f4b31a0297c7e988c54d6bfa8833a2bc932df",
	"{PBKDF2}$1$EvtKw7dsPfY1aVyZ$5000$36645d833bf5921906b2a906b281f78a12145bb8",
	"{ARGON2ID}$argon2id$v=19$m=65536,t=3,p=1$lPGkoQF2WtXk72MtYNaeyQ$9YZwkjNh36UTHGWUqj5T//byo2Lr90lXi6oRj396MHc",
	"{ARGON2I}$argon2i$v=19$m=32768,t=4,p=1$y0ZhQaws41MTi4YfryQQXw$sKjCIq5vMXYeQOjdAyZX/Se0o0A+gdCTU/3md356zxc",
	"{SHA1}v/kJq7yKPmAOXWtGwNvdb2RJ+HQ=",
	"{SHA}v/kJq7yKPmAOXWtGwNvdb2RJ+HQ=",
	"{SHA256}8IPkLtsEE92vF5vfd/hYLAkMJMCxBU+JIWtmdGsy4GM=",
	"{SHA512}pkGFaFLg9/VDNRRqyigxl+rN9UWd7XnUxlbeC2apKRbAkneZmsfhnTAIQhppdh2tyzhUYCsuQ5CGZErYJ9jw2Q==",
	"{sha512-crypt}$6$gsXZXOgJ9AcCQ7Go$icKZYUWiKoh6I98YIyzZc5X9NK7BwnwiiE9RUzAtrwBo1xBIBoGYW0XrbFO8NmWIrGMUnNI1qA/tU8e4XCs5u1",
}

func TestVerifyAcceptsDovecotHashesOfTheRightPassword(t *testing.T) {
	for _, h := range doveadmHashes {
		t.Run(h[:strings.IndexByte(h, '}')+1], func(t *testing.T) {
			ok, err := Verify(doveadmPassword, h)
			if err != nil || !ok {
				t.Fatalf("right password: Verify = %v, %v", ok, err)
			}
			for _, wrong := range []string{"secret#2024", "Secret#2024 ", "", "Secret#202"} {
				if ok, err := Verify(wrong, h); err != nil || ok {
					t.Fatalf("wrong password %q: Verify = %v, %v", wrong, ok, err)
				}
			}
		})
	}
}

func TestParseRejectsWhatItCannotCheck(t *testing.T) {
	for _, tc := range []struct {
		stored string
		want   error
	}{
		{"", ErrMalformed},
		{"$6$salt$hash", ErrMalformed},
		{"{SHA512-CRYPT", ErrMalformed},
		{"{PLAIN}secret", ErrUnsupported},
		{"{CLEAR}secret", ErrUnsupported},
		{"{DES-CRYPT}abcdefghijklm", ErrUnsupported},
		{"{SSHA.ROT13}abc", ErrUnsupported},
		{"{BLF-CRYPT.HEX}$2y$05$abc", ErrUnsupported},
		{"{SHA512-CRYPT}$5$salt$hash", ErrMalformed},
		{"{SHA512-CRYPT}$6$nodigest", ErrMalformed},
		{"{BLF-CRYPT}$2y$05$short", ErrMalformed},
		{"{CRYPT}abcdefghijklm", ErrMalformed},
		{"{SSHA}!!!", ErrMalformed},
		{"{SSHA}" + strings.Repeat("A", 24), ErrMalformed},       // 18 bytes: shorter than a SHA-1 digest
		{"{SSHA}" + strings.Repeat("A", 27) + "=", ErrMalformed}, // 20 bytes: a digest without salt
		{"{SHA256}AAAA", ErrMalformed},
		{"{PBKDF2}$1$salt$notanumber$00", ErrMalformed},
		{"{PBKDF2}$1$salt$999999999$00", ErrMalformed},
		{"{PBKDF2}$2$salt$5000$00", ErrMalformed},
		{"{ARGON2ID}$argon2id$v=19$m=99999999,t=3,p=1$lPGkoQF2WtXk72MtYNaeyQ$9YZwkjNh36UTHGWUqj5T//byo2Lr90lXi6oRj396MHc", ErrMalformed},
		{"{ARGON2ID}$argon2i$v=19$m=32768,t=4,p=1$y0ZhQaws41MTi4YfryQQXw$sKjCIq5vMXYeQOjdAyZX/Se0o0A+gdCTU/3md356zxc", ErrMalformed},
		// Costs that would make one sign-in take minutes or hours.
		{"{SHA512-CRYPT}$6$rounds=999999999$gsXZXOgJ9AcCQ7Go$icKZYUWiKoh6I98YIyzZc5X9NK7BwnwiiE9RUzAtrwBo1xBIBoGYW0XrbFO8NmWIrGMUnNI1qA/tU8e4XCs5u1", ErrMalformed},
		{"{CRYPT}$5$rounds=1000001$VcK6s4idVEpHMEny$RiXuP.4ODJbG8J0TmY25FBZtB8C/NekPxuhRPsIPbQC", ErrMalformed},
		{"{BLF-CRYPT}$2y$31$BY6T1kxINzvRGT0ckyBSbua/r3ivx4I27uHPE7W7f3iq7OpKykTdW", ErrMalformed},
		{"{WRAPPED-ARGON2ID}SHA512-CRYPT$JDYkcm91bmRzPTk5OTk5OTk5OSRzYWx0JA$argon2id$v=19$m=64,t=1,p=1$c2FsdHNhbHRzYWx0$a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5", ErrMalformed},
		{"{WRAPPED-ARGON2ID}PLAIN$$argon2id$v=19$m=64,t=1,p=1$c2FsdHNhbHRzYWx0$a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5", ErrMalformed},
	} {
		_, err := Parse(tc.stored)
		if !errors.Is(err, tc.want) {
			t.Errorf("Parse(%q) = %v, want %v", tc.stored, err, tc.want)
		}
	}
}

func TestErrorsNeverQuoteTheHash(t *testing.T) {
	const secretish = "{SSHA512}c2VjcmV0LWRpZ2VzdA-not-base64"
	_, err := Verify("pw", secretish)
	if err == nil || strings.Contains(err.Error(), "c2VjcmV0") {
		t.Fatalf("error %v quotes the hash", err)
	}
}

var testArgon = Argon2Params{Time: 1, MemoryKiB: 64, Threads: 1}

func TestArgon2HashVerifiesAndIsUpToDate(t *testing.T) {
	h := testArgon.Hash("Nouveau#Mot2passe")
	if !strings.HasPrefix(h, "{ARGON2ID}$argon2id$v=19$m=64,t=1,p=1$") {
		t.Fatalf("hash %s", h)
	}
	if ok, err := Verify("Nouveau#Mot2passe", h); err != nil || !ok {
		t.Fatalf("Verify = %v, %v", ok, err)
	}
	if ok, _ := Verify("nouveau#Mot2passe", h); ok {
		t.Fatal("wrong password verified")
	}
	if testArgon.NeedsUpdate(h) {
		t.Error("a hash with the current parameters needs an update")
	}
	if h2 := testArgon.Hash("Nouveau#Mot2passe"); h2 == h {
		t.Error("two hashes share a salt")
	}
}

func TestNeedsUpdateForLegacyAndWeakerHashes(t *testing.T) {
	stronger := Argon2Params{Time: 2, MemoryKiB: 128, Threads: 1}
	// A fresh slice: appending to doveadmHashes[:3] would overwrite it.
	for _, h := range append(slices.Clone(doveadmHashes[:3]), testArgon.Hash("x"), "{garbage") {
		if !stronger.NeedsUpdate(h) {
			t.Errorf("NeedsUpdate(%.20s...) = false", h)
		}
	}
}

func TestGenerateWritesWhatDovecotAccepts(t *testing.T) {
	doveadm := requireDoveadm(t)
	const pw = "Zéro:Un{Deux}$3"
	for _, scheme := range []string{SHA512Crypt, SHA256Crypt, BLFCrypt, SSHA512, Argon2ID} {
		h, err := Generate(pw, scheme, Argon2Params{Time: 1, MemoryKiB: 1024, Threads: 1})
		if err != nil {
			t.Fatal(err)
		}
		if ok, err := Verify(pw, h); err != nil || !ok {
			t.Errorf("%s: own Verify = %v, %v", scheme, ok, err)
		}
		if out, err := exec.Command(doveadm, "pw", "-t", h, "-p", pw).CombinedOutput(); err != nil {
			t.Errorf("%s: doveadm pw -t refused it: %v: %s", scheme, err, out)
		}
	}
	if _, err := Generate(pw, MD5Crypt, testArgon); !errors.Is(err, ErrUnsupported) {
		t.Errorf("Generate(MD5-CRYPT) = %v, want ErrUnsupported", err)
	}
}

func TestVerifyAcceptsFreshDoveadmHashes(t *testing.T) {
	doveadm := requireDoveadm(t)
	const pw = "fresh Pässword\t1"
	for _, scheme := range []string{"BLF-CRYPT", "SHA512-CRYPT", "SHA256-CRYPT", "MD5-CRYPT", "SSHA", "SSHA256", "SSHA512", "PBKDF2", "ARGON2ID", "CRYPT"} {
		out, err := exec.Command(doveadm, "pw", "-s", scheme, "-p", pw).Output()
		if err != nil {
			t.Fatalf("doveadm pw -s %s: %v", scheme, err)
		}
		h := strings.TrimSpace(string(out))
		if ok, err := Verify(pw, h); err != nil || !ok {
			t.Errorf("%s: Verify = %v, %v", scheme, ok, err)
		}
	}
}

func requireDoveadm(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("doveadm")
	if err == nil {
		return p
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("doveadm missing: install the Debian package dovecot-imapd")
	}
	t.Skip("doveadm missing: install the Debian package dovecot-imapd")
	return ""
}

func TestWrappedLegacyHashesVerifyTheSamePasswords(t *testing.T) {
	for _, legacy := range doveadmHashes {
		t.Run(legacy[:strings.IndexByte(legacy, '}')+1], func(t *testing.T) {
			w, err := testArgon.Wrap(legacy)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(w, "{WRAPPED-ARGON2ID}") {
				t.Fatalf("wrapped form %.30s...", w)
			}
			// The legacy digest is gone: only its setting is kept.
			h, _ := Parse(legacy)
			_, digest, err := split(h)
			if err != nil {
				t.Fatal(err)
			}
			for _, enc := range []string{string(digest), base64.StdEncoding.EncodeToString(digest), base64.RawStdEncoding.EncodeToString(digest), hex.EncodeToString(digest)} {
				if len(enc) >= 8 && strings.Contains(w, enc) {
					t.Fatalf("the wrapped hash still holds the legacy digest")
				}
			}
			if ok, err := Verify(doveadmPassword, w); err != nil || !ok {
				t.Fatalf("right password: Verify = %v, %v", ok, err)
			}
			if ok, err := Verify("Secret#2024 ", w); err != nil || ok {
				t.Fatalf("wrong password: Verify = %v, %v", ok, err)
			}
			if p, ok := Argon2Of(w); !ok || p != testArgon {
				t.Fatalf("Argon2Of = %+v, %v; want %+v", p, ok, testArgon)
			}
			if !Wraps(w, legacy) {
				t.Fatal("Wraps(wrapped, its legacy hash) = false")
			}
			if !testArgon.NeedsUpdate(w) {
				t.Fatal("a wrapped hash does not need an update after a sign-in")
			}
			if again, err := testArgon.Wrap(w); err != nil || again != w {
				t.Fatalf("wrapping twice changed the hash: %v", err)
			}
		})
	}
	a, _ := testArgon.Wrap(doveadmHashes[0])
	if Wraps(a, doveadmHashes[1]) || Wraps(a, legacyOf(t, "{SHA512-CRYPT}", "Other#2024")) {
		t.Fatal("Wraps accepts another legacy hash")
	}
}

func legacyOf(t *testing.T, scheme, pw string) string {
	t.Helper()
	h, err := Generate(pw, strings.Trim(scheme, "{}"), testArgon)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// TestBcryptDigestMatchesXCrypto checks the salted bcrypt used for
// wrapping against golang.org/x/crypto/bcrypt, long passwords included.
func TestBcryptDigestMatchesXCrypto(t *testing.T) {
	for _, pw := range []string{"", "a", "Secret#2024", "Zéro:Un{Deux}$3", strings.Repeat("x", 72), strings.Repeat("y", 73) + "z"} {
		full, err := bcrypt.GenerateFromPassword([]byte(pw[:min(len(pw), 72)]), 4)
		if err != nil {
			t.Fatal(err)
		}
		got, err := bcryptDigest([]byte(pw), 4, string(full[7:29]))
		if err != nil || got != string(full[29:]) {
			t.Errorf("password of %d bytes: digest %q, %v; want %q", len(pw), got, err, full[29:])
		}
	}
}

func TestMemoryOfAVerification(t *testing.T) {
	inner := "{ARGON2ID}$argon2id$v=19$m=65536,t=3,p=1$lPGkoQF2WtXk72MtYNaeyQ$9YZwkjNh36UTHGWUqj5T//byo2Lr90lXi6oRj396MHc"
	w, err := testArgon.Wrap(inner)
	if err != nil {
		t.Fatal(err)
	}
	sha, _ := testArgon.Wrap(doveadmHashes[0])
	for _, tc := range []struct {
		name, stored string
		want         uint64
	}{
		{"argon2id of the service", testArgon.Hash("x"), 64},
		{"wrapped SHA512-CRYPT", sha, 64},
		{"wrapped argon2id needs both", w, 64 + 65536},
		{"a legacy digest", doveadmHashes[5], 0},
	} {
		if got := MemoryKiB(tc.stored); got != tc.want {
			t.Errorf("%s: MemoryKiB = %d, want %d", tc.name, got, tc.want)
		}
	}
}
