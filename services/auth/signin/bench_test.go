package signin

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/mailferry/mailferry/services/auth/account"
	"github.com/mailferry/mailferry/services/auth/internal/authtest"
)

// BenchmarkFailedCheckByPath measures the work of a failed check on each
// path with the default argon2id parameters (19 MiB, 2 passes), without
// the failure time: the paths cost the same, one argon2id each (a
// wrapped legacy hash adds its legacy scheme's few milliseconds). With
// the failure time, every one of them is answered after 3 s.
//
//	go test -run '^$' -bench FailedCheckByPath ./services/auth/signin
func BenchmarkFailedCheckByPath(b *testing.B) {
	f := newFixture(b, refuses, ", argon2: {time: 2, memory_kib: 19456}, rate_limit: {account_failures: 1000000, address_failures: 1000000, address_requests: 1000000}",
		func(o *Options) { o.FailureTime = time.Nanosecond })
	f.importUsers(b, map[string]string{"sha512@example.org": legacyHashes["sha512@example.org"], "upgraded@example.org": "", "nohash@example.org": ""})
	ctx := authtest.Context(b, 10*time.Minute)
	h := Argon2FromConfig(authtest.Auth(b, f.cfg).Argon2).Hash(legacyPassword)
	if _, err := f.store.Update(ctx, "upgraded@example.org", func(a *account.Account) error { a.Hash = h; return nil }); err != nil {
		b.Fatal(err)
	}
	for _, email := range []string{"unknown@example.org", "sha512@example.org", "upgraded@example.org", "nohash@example.org"} {
		b.Run(email, func(b *testing.B) {
			i := 0
			for b.Loop() {
				i++
				if _, err := f.svc.Login(ctx, email, fmt.Sprint("wrong-", i), "192.0.2.1"); !errors.Is(err, ErrBadCredentials) {
					b.Fatal(err)
				}
			}
		})
	}
}
