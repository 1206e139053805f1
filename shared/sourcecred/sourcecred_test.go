package sourcecred

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mailferry/mailferry/shared/broker"
	"github.com/mailferry/mailferry/shared/config"
	"github.com/mailferry/mailferry/shared/testenv/brokertest"
)

const password = "Legacy-Secret-9"

func keyFile(t *testing.T, content string, mode os.FileMode) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "source-credential.key")
	if err := os.WriteFile(p, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
	return p
}

// rawKey is 32 fixed bytes, not all printable.
func rawKey() []byte {
	b := make([]byte, KeySize)
	for i := range b {
		b[i] = byte(i * 37)
	}
	return b
}

func newKey(t *testing.T) *Key {
	t.Helper()
	k, err := ParseKey([]byte(NewKeyText()))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestASealedPasswordOpensOnlyWithItsKeyAndForItsMailbox(t *testing.T) {
	k, other := newKey(t), newKey(t)
	sealed := k.Seal("alice@po1", password)
	if strings.Contains(string(sealed), password) {
		t.Fatal("the sealed value holds the password in clear")
	}
	if again := k.Seal("alice@po1", password); string(again) == string(sealed) {
		t.Fatal("two seals of one password are equal: the nonce is not fresh")
	}
	got, err := k.Open("alice@po1", sealed)
	if err != nil || got != password {
		t.Fatalf("Open = %q, %v; want the password", got, err)
	}
	for _, tt := range []struct {
		name    string
		key     *Key
		mailbox string
		sealed  []byte
	}{
		{"another key", other, "alice@po1", sealed},
		{"copied to another mailbox", k, "bob@po1", sealed},
		{"one byte changed", k, "alice@po1", append(append([]byte{}, sealed[:len(sealed)-1]...), sealed[len(sealed)-1]^1)},
		{"truncated", k, "alice@po1", sealed[:10]},
		{"empty", k, "alice@po1", nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.key.Open(tt.mailbox, tt.sealed)
			if !errors.Is(err, ErrUndecryptable) || got != "" {
				t.Fatalf("Open = %q, %v; want ErrUndecryptable", got, err)
			}
			if strings.Contains(err.Error(), password) {
				t.Fatal("the error shows the password")
			}
		})
	}
}

func TestTheKeyFileIsReadRawHexOrBase64AndRefusedWhenOthersMayReadIt(t *testing.T) {
	raw := rawKey()
	for _, tt := range []struct {
		name    string
		content string
		mode    os.FileMode
		wantErr string
	}{
		{"raw bytes", string(raw), 0o600, ""},
		{"hex with a newline", NewKeyText() + "\n", 0o600, ""},
		{"base64", base64.StdEncoding.EncodeToString(raw) + "\n", 0o400, ""},
		{"group-readable", NewKeyText(), 0o640, "mode 0640"},
		{"world-readable", NewKeyText(), 0o644, "mode 0644"},
		{"too short", "abcdef\n", 0o600, "want 32 bytes"},
		{"hex of 16 bytes", NewKeyText()[:32], 0o600, "all printable"},
		{"a passphrase of 32 characters", "correct horse battery staple 123", 0o600, "all printable"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			k, err := LoadKey(keyFile(t, tt.content, tt.mode))
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				if got, err := k.Open("m", k.Seal("m", password)); err != nil || got != password {
					t.Fatalf("round trip = %q, %v", got, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("LoadKey err = %v; want one saying %q", err, tt.wantErr)
			}
			if strings.Contains(err.Error(), strings.TrimSpace(tt.content)) {
				t.Fatal("the error shows the key")
			}
		})
	}
}

func TestTheSameKeyReadFromItsThreeFormsOpensWhatTheOtherSealed(t *testing.T) {
	raw := rawKey()
	a, err := ParseKey(raw)
	if err != nil {
		t.Fatal(err)
	}
	for _, text := range []string{hex.EncodeToString(raw), base64.StdEncoding.EncodeToString(raw)} {
		b, err := ParseKey([]byte(text))
		if err != nil {
			t.Fatal(err)
		}
		if got, err := b.Open("m", a.Seal("m", password)); err != nil || got != password {
			t.Fatalf("%s: Open = %q, %v", text, got, err)
		}
	}
}

// credentials opens the credentials bucket on an embedded server, with
// the given nats section.
func credentials(t *testing.T, natsYAML string) *broker.Broker {
	t.Helper()
	return brokertest.Embedded(t, natsYAML, broker.Needs{Writes: []string{broker.BucketSourceCredentials}})
}

func TestTheBucketKeepsACredentialForTheConfiguredTTL(t *testing.T) {
	for _, tt := range []struct {
		name, yaml string
		want       time.Duration
	}{
		{"default", "", 72 * time.Hour},
		{"configured", ", source_credential_ttl: 240h", 240 * time.Hour},
	} {
		t.Run(tt.name, func(t *testing.T) {
			b := credentials(t, tt.yaml)
			kv, err := Bind(context.Background(), b.JS)
			if err != nil || kv == nil {
				t.Fatalf("Bind = %v, %v", kv, err)
			}
			st, err := kv.Status(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if st.TTL() != tt.want {
				t.Fatalf("TTL = %s; want %s", st.TTL(), tt.want)
			}
		})
	}
	if _, err := config.Parse([]byte("nats: {source_credential_ttl: 10m}\n"), t.TempDir(), nil); err == nil || !strings.Contains(err.Error(), "source_credential_ttl") {
		t.Fatalf("a 10m TTL: err = %v; want it refused", err)
	}
}

func TestAKeyFileForTheTargetIsRefused(t *testing.T) {
	_, err := config.Parse([]byte("target: {address: 127.0.0.1:1, auth: user, credential_key_file: k}\n"), t.TempDir(), nil)
	if err == nil || !strings.Contains(err.Error(), "credential_key_file is for the source") {
		t.Fatalf("err = %v; want it refused", err)
	}
}

func TestFiftyConcurrentHandOffsStoreOneCredentialAndSayCreatedOnce(t *testing.T) {
	b := credentials(t, "")
	kv, err := Bind(context.Background(), b.JS)
	if err != nil {
		t.Fatal(err)
	}
	s := &Store{KV: kv, Key: newKey(t)}
	var created atomic.Int32
	var wg sync.WaitGroup
	errs := make(chan error, 50)
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ok, err := s.HandOff(context.Background(), "alice@po1", password)
			if err != nil {
				errs <- err
			}
			if ok {
				created.Add(1)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if created.Load() != 1 {
		t.Fatalf("created %d times; want once", created.Load())
	}
	if got, err := s.Password(context.Background(), "alice@po1"); err != nil || got != password {
		t.Fatalf("Password = %q, %v", got, err)
	}
}

func TestACredentialIsReadUntilForgottenAndAStrangerIsWaiting(t *testing.T) {
	b := credentials(t, "")
	ctx := context.Background()
	kv, err := Bind(ctx, b.JS)
	if err != nil {
		t.Fatal(err)
	}
	s := &Store{KV: kv, Key: newKey(t)}
	if _, err := s.HandOff(ctx, "alice@po1", password); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Password(ctx, "bob@po1"); !errors.Is(err, ErrWaiting) {
		t.Fatalf("bob: err = %v; want ErrWaiting", err)
	}
	other := &Store{KV: kv, Key: newKey(t)}
	if _, err := other.Password(ctx, "alice@po1"); !errors.Is(err, ErrUndecryptable) {
		t.Fatalf("another key: err = %v; want ErrUndecryptable", err)
	}
	// A value copied to another mailbox's key does not open there.
	e, err := kv.Get(ctx, KeyOf("alice@po1"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(ctx, KeyOf("carol@po1"), e.Value()); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Password(ctx, "carol@po1"); !errors.Is(err, ErrUndecryptable) {
		t.Fatalf("copied value: err = %v; want ErrUndecryptable", err)
	}
	n, err := Forget(ctx, kv, "alice@po1", "bob@po1")
	if err != nil || n != 1 {
		t.Fatalf("Forget = %d, %v; want 1 (bob had none)", n, err)
	}
	if has, err := Has(ctx, kv, "alice@po1"); err != nil || has {
		t.Fatalf("alice after Forget: has %v, %v", has, err)
	}
	if _, err := s.Password(ctx, "alice@po1"); !errors.Is(err, ErrWaiting) {
		t.Fatalf("alice after Forget: err = %v; want ErrWaiting", err)
	}
}

func TestCredentialsForUsesTheHandedOffPasswordOnlyForAMailboxWithoutAPasswordFile(t *testing.T) {
	b := credentials(t, "")
	ctx := context.Background()
	dir := t.TempDir()
	keyText := NewKeyText()
	kf := keyFile(t, keyText, 0o600)
	pwFile := filepath.Join(dir, "bob.pw")
	if err := os.WriteFile(pwFile, []byte("from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse([]byte("source: {address: 127.0.0.1:1, tls: none, auth: user, credential_key_file: "+kf+"}\n"), dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	kv, err := Bind(ctx, b.JS)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ParseKey([]byte(keyText))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := (&Store{KV: kv, Key: key}).HandOff(ctx, "alice@po1", password); err != nil {
		t.Fatal(err)
	}
	if c, err := CredentialsFor(ctx, b.JS, cfg, "alice@po1", ""); err != nil || c.Password != password || c.User != "alice@po1" {
		t.Fatalf("alice: %v, %v", c, err)
	}
	if c, err := CredentialsFor(ctx, b.JS, cfg, "bob@po1", pwFile); err != nil || c.Password != "from-file" {
		t.Fatalf("bob with a file: %v, %v", c, err)
	}
	_, err = CredentialsFor(ctx, b.JS, cfg, "carol@po1", "")
	if !errors.Is(err, ErrWaiting) || !strings.Contains(err.Error(), "carol@po1") {
		t.Fatalf("carol: err = %v; want ErrWaiting naming her", err)
	}
	if _, err := CredentialsFor(ctx, nil, cfg, "alice@po1", ""); !errors.Is(err, ErrWaiting) {
		t.Fatalf("without a broker: err = %v; want ErrWaiting", err)
	}
}
