package account

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailferry/mailferry/services/auth/internal/authtest"
	"github.com/mailferry/mailferry/services/auth/passhash"
)

const sha512Hash = "{SHA512-CRYPT}$6$gsXZXOgJ9AcCQ7Go$icKZYUWiKoh6I98YIyzZc5X9NK7BwnwiiE9RUzAtrwBo1xBIBoGYW0XrbFO8NmWIrGMUnNI1qA/tU8e4XCs5u1"

// sha512Password is the password of sha512Hash.
const sha512Password = "Secret#2024"

var testArgon = passhash.Argon2Params{Time: 1, MemoryKiB: 64, Threads: 1}

func newStore(t *testing.T) (*Store, context.Context) {
	t.Helper()
	cfg := authtest.Config(t, "")
	b := authtest.Broker(t, cfg)
	ctx := authtest.Context(t, time.Minute)
	s, err := Open(ctx, b.JS, "mf_accounts", 1)
	if err != nil {
		t.Fatal(err)
	}
	return s, ctx
}

func TestNormalizeEmail(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{" Alice@Example.ORG ", "alice@example.org"},
		{"a.b+c@sub.example.org", "a.b+c@sub.example.org"},
		{"no-at-sign", ""},
		{"@example.org", ""},
		{"a@localhost", ""},
		{"a@b@example.org", ""},
		{"a b@example.org", ""},
		{"a:b@example.org", ""},
		{"a@example..org", ""},
		{"#a@example.org", ""}, // a passwd-file comment
		{"a#b@example.org", "a#b@example.org"},
		{strings.Repeat("a", 250) + "@example.org", ""},
	} {
		got, err := NormalizeEmail(tc.in)
		if got != tc.want || (tc.want == "") != errors.Is(err, ErrInvalidEmail) {
			t.Errorf("NormalizeEmail(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

func TestReadCSVAcceptsTheDocumentedColumns(t *testing.T) {
	rows, err := ReadCSV(strings.NewReader("\ufeffemail,role,legacy_hash\r\nA@Example.org,Admin," + sha512Hash + "\r\nb@example.org,email-only,\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := []Row{{Line: 2, Email: "a@example.org", Role: RoleAdmin, LegacyHash: sha512Hash}, {Line: 3, Email: "b@example.org", Role: RoleEmailOnly}}
	if fmt.Sprint(rows) != fmt.Sprint(want) {
		t.Fatalf("rows %v, want %v", rows, want)
	}
	if _, err := ReadCSV(strings.NewReader("mail,role,hash\n")); err == nil {
		t.Fatal("a wrong header was accepted")
	}
	_, err = ReadCSV(strings.NewReader("email,role,legacy_hash\nc@example.org,admin\n"))
	if err == nil || !strings.Contains(err.Error(), "line 2: want 3 columns") {
		t.Fatalf("short line: %v", err)
	}
}

func TestImportKeepsTheHashOfUsersWhoChangedTheirPassword(t *testing.T) {
	s, ctx := newStore(t)
	now := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	rows := []Row{
		{Email: "a@example.org", Role: RoleAdmin, LegacyHash: sha512Hash},
		{Email: "b@example.org", Role: RoleEmailOnly},
		{Email: "c@example.org", Role: RoleEmailOnly, LegacyHash: "{SSHA}9QgVRMQV4kKPlslxLyqNpON0ROwCgX27"},
	}
	res, err := s.Import(ctx, rows, ImportOptions{Now: now, Argon2: testArgon})
	if err != nil || res != (ImportResult{Created: 3}) {
		t.Fatalf("first import %+v, %v", res, err)
	}
	// c sets a new password; a's role changes at the legacy platform.
	if _, err := s.Update(ctx, "c@example.org", func(a *Account) error {
		a.Hash, a.PasswordUpdatedAt = "{ARGON2ID}new", now
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	rows[0].Role = RoleEmailOnly
	res, err = s.Import(ctx, rows, ImportOptions{Now: now, Argon2: testArgon})
	if err != nil || res != (ImportResult{Updated: 1, Unchanged: 1, Kept: 1}) {
		t.Fatalf("second import %+v, %v", res, err)
	}
	c, _ := s.Get(ctx, "c@example.org")
	if c.Hash != "{ARGON2ID}new" {
		t.Fatal("re-import replaced a hash the user had set")
	}
	a, _ := s.Get(ctx, "a@example.org")
	if a.Role != RoleEmailOnly || a.Domain != "example.org" || !a.ImportedAt.Equal(now) {
		t.Fatalf("a is %+v", a)
	}
	list, err := s.List(ctx)
	if err != nil || len(list) != 3 || list[0].Email != "a@example.org" || list[2].Email != "c@example.org" {
		t.Fatalf("List = %v, %v", list, err)
	}
}

func TestConcurrentUpdatesAllLand(t *testing.T) {
	s, ctx := newStore(t)
	if _, err := s.Import(ctx, []Row{{Email: "a@example.org", Role: RoleAdmin}}, ImportOptions{Now: time.Now(), Argon2: testArgon}); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := s.Update(ctx, "a@example.org", func(a *Account) error {
				a.Hash += fmt.Sprint(i)
				return nil
			})
			if err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	a, _ := s.Get(ctx, "a@example.org")
	if len(a.Hash) != 6 {
		t.Fatalf("hash %q: some compare-and-set updates were lost", a.Hash)
	}
	if _, err := s.Update(ctx, "nobody@example.org", func(*Account) error { return nil }); !errors.Is(err, ErrNotFound) {
		t.Fatalf("update of a missing account: %v", err)
	}
}

func TestDomainAnnouncement(t *testing.T) {
	s, ctx := newStore(t)
	if ok, err := s.DomainAnnounced(ctx, "example.org"); ok || err != nil {
		t.Fatalf("fresh domain announced: %v, %v", ok, err)
	}
	if err := s.MarkDomainAnnounced(ctx, "example.org"); err != nil {
		t.Fatal(err)
	}
	if ok, err := s.DomainAnnounced(ctx, "example.org"); !ok || err != nil {
		t.Fatalf("marked domain: %v, %v", ok, err)
	}
	if list, _ := s.List(ctx); len(list) != 0 {
		t.Fatalf("a domain marker was listed as an account: %v", list)
	}
}

// TestImportWrapsLegacyHashesInArgon2id shows that the bucket never holds
// a legacy digest, that importing the same file again changes nothing and
// that a new legacy hash (or one stored raw by an earlier version) is
// wrapped anew.
func TestImportWrapsLegacyHashesInArgon2id(t *testing.T) {
	s, ctx := newStore(t)
	opts := ImportOptions{Now: time.Now(), Argon2: testArgon}
	rows := []Row{{Line: 2, Email: "a@example.org", Role: RoleAdmin, LegacyHash: sha512Hash}}
	if res, err := s.Import(ctx, rows, opts); err != nil || res != (ImportResult{Created: 1}) {
		t.Fatalf("import %+v, %v", res, err)
	}
	a, _ := s.Get(ctx, "a@example.org")
	digest := sha512Hash[strings.LastIndexByte(sha512Hash, '$')+1:]
	if !strings.HasPrefix(a.Hash, "{WRAPPED-ARGON2ID}SHA512-CRYPT$") || strings.Contains(a.Hash, digest) {
		t.Fatalf("stored %.40s...: want the legacy hash wrapped, without its digest", a.Hash)
	}
	if p, ok := passhash.Argon2Of(a.Hash); !ok || p != testArgon {
		t.Fatalf("outer argon2id %+v, %v", p, ok)
	}
	if ok, err := passhash.Verify(sha512Password, a.Hash); err != nil || !ok {
		t.Fatalf("the legacy password does not verify: %v, %v", ok, err)
	}
	first := a.Hash
	if res, err := s.Import(ctx, rows, opts); err != nil || res != (ImportResult{Unchanged: 1}) {
		t.Fatalf("same file again: %+v, %v", res, err)
	}
	if a, _ := s.Get(ctx, "a@example.org"); a.Hash != first {
		t.Fatal("importing the same hash again rewrapped it")
	}
	// A hash stored raw by an earlier version is wrapped on the next import.
	if _, err := s.Update(ctx, "a@example.org", func(a *Account) error { a.Hash = sha512Hash; return nil }); err != nil {
		t.Fatal(err)
	}
	if res, err := s.Import(ctx, rows, opts); err != nil || res != (ImportResult{Updated: 1}) {
		t.Fatalf("raw hash in the bucket: %+v, %v", res, err)
	}
	if a, _ := s.Get(ctx, "a@example.org"); !strings.HasPrefix(a.Hash, "{WRAPPED-ARGON2ID}") {
		t.Fatal("a raw legacy hash was left in the bucket")
	}
	rows[0].LegacyHash = "{SSHA}9QgVRMQV4kKPlslxLyqNpON0ROwCgX27"
	if res, err := s.Import(ctx, rows, opts); err != nil || res != (ImportResult{Updated: 1}) {
		t.Fatalf("new legacy hash: %+v, %v", res, err)
	}
	if a, _ := s.Get(ctx, "a@example.org"); !strings.HasPrefix(a.Hash, "{WRAPPED-ARGON2ID}SSHA$") {
		t.Fatalf("stored %.30s..., want the new hash wrapped", a.Hash)
	}
}

func TestReadCSVRefusesCommentAddressesAndCostlyHashes(t *testing.T) {
	const costly = "$6$rounds=999999999$gsXZXOgJ9AcCQ7Go$icKZYUWiKoh6I98YIyzZc5X9NK7BwnwiiE9RUzAtrwBo1xBIBoGYW0XrbFO8NmWIrGMUnNI1qA/tU8e4XCs5u1"
	csv := "email,role,legacy_hash\n" +
		"ok@example.org,admin," + sha512Hash + "\n" +
		"#admin@example.org,admin,\n" +
		"slow@example.org,admin,{SHA512-CRYPT}" + costly + "\n" +
		"bcrypt@example.org,admin,{BLF-CRYPT}$2y$31$BY6T1kxINzvRGT0ckyBSbua/r3ivx4I27uHPE7W7f3iq7OpKykTdW\n"
	_, err := ReadCSV(strings.NewReader(csv))
	if err == nil {
		t.Fatal("accepted")
	}
	for _, want := range []string{"line 3: email", "line 4: legacy_hash", "rounds 999999999", "line 5: legacy_hash"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q: %v", want, err)
		}
	}
	if strings.Contains(err.Error(), "gsXZXOgJ9AcCQ7Go") || strings.Contains(err.Error(), "BY6T1kxI") {
		t.Errorf("error quotes a hash: %v", err)
	}
}
