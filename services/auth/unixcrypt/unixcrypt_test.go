package unixcrypt

import (
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// Vectors from Drepper's specification (SHA-crypt) and from OpenSSL's
// `openssl passwd -1` (MD5-crypt), each confirmed with libxcrypt.
var vectors = []struct {
	password, setting, want string
}{
	{"Hello world!", "$5$saltstring", "$5$saltstring$5B8vYYiY.CVt1RlTTf8KbXBH3hsxY/GNooZaBBGWEc5"},
	{"Hello world!", "$5$rounds=10000$saltstringsaltstring", "$5$rounds=10000$saltstringsaltst$3xv.VbSHBb41AL9AvLeujZkZRBAwqFMz2.opqey6IcA"},
	{"This is just a test", "$5$rounds=5000$toolongsaltstring", "$5$rounds=5000$toolongsaltstrin$Un/5jzAHMgOGZ5.mWJpuVolil07guHPvOW8mGRcvxa5"},
	{"a very much longer text to encrypt.  This one even stretches over morethan one line.", "$5$rounds=1400$anotherlongsaltstring", "$5$rounds=1400$anotherlongsalts$Rx.j8H.h8HjEDGomFU8bDkXm3XIUnzyxf12oP84Bnq1"},
	{"we have a short salt string but not a short password", "$5$rounds=77777$short", "$5$rounds=77777$short$JiO1O3ZpDAxGJeaDIuqCoEFysAe1mZNJRs3pw0KQRd/"},
	{"a short string", "$5$rounds=123456$asaltof16chars..", "$5$rounds=123456$asaltof16chars..$gP3VQ/6X7UUEW3HkBn2w1/Ptq2jxPyzV/cZKmF/wJvD"},
	{"the minimum number is still observed", "$5$rounds=10$roundstoolow", "$5$rounds=1000$roundstoolow$yfvwcWrQ8l/K0DAWyuPMDNHpIVlTQebY9l/gL972bIC"},
	{"Hello world!", "$6$saltstring", "$6$saltstring$svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/O817G3uBnIFNjnQJuesI68u4OTLiBFdcbYEdFCoEOfaS35inz1"},
	{"Hello world!", "$6$rounds=10000$saltstringsaltstring", "$6$rounds=10000$saltstringsaltst$OW1/O6BYHV6BcXZu8QVeXbDWra3Oeqh0sbHbbMCVNSnCM/UrjmM0Dp8vOuZeHBy/YTBmSK6H9qs/y3RnOaw5v."},
	{"This is just a test", "$6$rounds=5000$toolongsaltstring", "$6$rounds=5000$toolongsaltstrin$lQ8jolhgVRVhY4b5pZKaysCLi0QBxGoNeKQzQ3glMhwllF7oGDZxUhx1yxdYcz/e1JSbq3y6JMxxl8audkUEm0"},
	{"a very much longer text to encrypt.  This one even stretches over morethan one line.", "$6$rounds=1400$anotherlongsaltstring", "$6$rounds=1400$anotherlongsalts$POfYwTEok97VWcjxIiSOjiykti.o/pQs.wPvMxQ6Fm7I6IoYN3CmLs66x9t0oSwbtEW7o7UmJEiDwGqd8p4ur1"},
	{"we have a short salt string but not a short password", "$6$rounds=77777$short", "$6$rounds=77777$short$WuQyW2YR.hBNpjjRhpYD/ifIw05xdfeEyQoMxIXbkvr0gge1a1x3yRULJ5CCaUeOxFmtlcGZelFl5CxtgfiAc0"},
	{"a short string", "$6$rounds=123456$asaltof16chars..", "$6$rounds=123456$asaltof16chars..$BtCwjqMJGx5hrJhZywWvt0RLE8uZ4oPwcelCjmw2kSYu.Ec6ycULevoBK25fs2xXgMNrCzIMVcgEJAstJeonj1"},
	{"the minimum number is still observed", "$6$rounds=10$roundstoolow", "$6$rounds=1000$roundstoolow$kUMsbe306n21p9R.FRkW3IGn.S9NPN0x50YhH1xhLsPuWGsUSklZt58jaTfF4ZEQpyUNGc0dqbpBYYBaHHrsX."},
	{"password", "$1$saltsalt", "$1$saltsalt$qjXMvbEw8oaL.CzflDtaK/"},
	{"x", "$1$", "$1$$LP5.V3ajGqHDdXW6XwZQy."},
	{"ünïcödé", "$1$abcdefgh", "$1$abcdefgh$KCmo/LF2kHO2/f/zreMXd0"},
	{strings.Repeat("a", 40), "$1$12345678", "$1$12345678$beiWYJUUHF.ZVo9A4ag9w0"},
}

func TestHashMatchesPublishedVectors(t *testing.T) {
	for _, v := range vectors {
		t.Run(v.setting, func(t *testing.T) {
			got, err := Hash([]byte(v.password), v.setting)
			if err != nil {
				t.Fatal(err)
			}
			if got != v.want {
				t.Fatalf("Hash(%q, %q)\n got %s\nwant %s", v.password, v.setting, got, v.want)
			}
		})
	}
}

func TestVerifyAcceptsOnlyTheRightPassword(t *testing.T) {
	for _, v := range vectors {
		ok, err := Verify([]byte(v.password), v.want)
		if err != nil || !ok {
			t.Errorf("Verify(right password, %s) = %v, %v", v.want, ok, err)
		}
		ok, err = Verify([]byte(v.password+"x"), v.want)
		if err != nil || ok {
			t.Errorf("Verify(wrong password, %s) = %v, %v", v.want, ok, err)
		}
	}
}

func TestVerifyRejectsOtherSchemes(t *testing.T) {
	for _, h := range []string{"$2y$05$abcdefghijklmnopqrstuu", "abc", "$y$j9T$salt$hash", ""} {
		if _, err := Verify([]byte("x"), h); err == nil {
			t.Errorf("Verify(%q) gave no error", h)
		}
	}
}

func TestGenerateRoundTrips(t *testing.T) {
	for _, tc := range []struct {
		prefix string
		rounds int
		want   string
	}{{PrefixSHA512, 0, "$6$"}, {PrefixSHA256, 0, "$5$"}, {PrefixSHA512, 6000, "$6$rounds=6000$"}} {
		h, err := Generate([]byte("Pässword 1!"), tc.prefix, tc.rounds)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(h, tc.want) {
			t.Errorf("Generate gave %s, want prefix %s", h, tc.want)
		}
		if ok, _ := Verify([]byte("Pässword 1!"), h); !ok {
			t.Errorf("generated %s does not verify", h)
		}
	}
	if _, err := Generate([]byte("x"), PrefixMD5, 0); err == nil {
		t.Error("Generate wrote MD5-crypt")
	}
}

// TestVerifyAcceptsDoveadmHashes checks hashes that Dovecot itself made.
func TestVerifyAcceptsDoveadmHashes(t *testing.T) {
	if _, err := exec.LookPath("doveadm"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("doveadm missing: install the Debian package dovecot-imapd")
		}
		t.Skip("doveadm missing: install the Debian package dovecot-imapd")
	}
	const pw = "Tr0ub4dor&3 ünïcode"
	for _, scheme := range []string{"MD5-CRYPT", "SHA256-CRYPT", "SHA512-CRYPT"} {
		out, err := exec.Command("doveadm", "pw", "-s", scheme, "-p", pw).Output()
		if err != nil {
			t.Fatalf("doveadm pw -s %s: %v", scheme, err)
		}
		h := strings.TrimSpace(string(out))
		h = h[strings.IndexByte(h, '}')+1:]
		if ok, err := Verify([]byte(pw), h); err != nil || !ok {
			t.Errorf("%s %s: Verify = %v, %v", scheme, h, ok, err)
		}
	}
}

func TestRoundsAboveTheCapAreRefusedNotComputed(t *testing.T) {
	for _, tc := range []struct {
		name, hash string
		wantErr    bool
	}{
		{"the most the specification allows", "$6$rounds=999999999$saltsalt$AAAA", true},
		{"one above the cap", "$5$rounds=1000001$saltsalt$AAAA", true},
		{"at the cap", "$6$rounds=1000000$saltsalt$AAAA", false},
		{"the default", "$6$saltsalt$AAAA", false},
		{"below the minimum, clamped as specified", "$5$rounds=10$saltsalt$AAAA", false},
		{"MD5-crypt has fixed rounds", "$1$saltsalt$AAAA", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := Check(tc.hash)
			if (err != nil) != tc.wantErr || (tc.wantErr && !errors.Is(err, ErrRounds)) {
				t.Fatalf("Check = %v, want error %v", err, tc.wantErr)
			}
			if !tc.wantErr {
				return
			}
			// Refused from the setting alone, before any round is
			// computed (999,999,999 rounds would take minutes).
			ok, err := Verify([]byte("password"), tc.hash)
			if ok || !errors.Is(err, ErrRounds) {
				t.Fatalf("Verify = %v, %v; want ErrRounds", ok, err)
			}
			if strings.Contains(err.Error(), "saltsalt") {
				t.Fatalf("error quotes the hash: %v", err)
			}
		})
	}
}
