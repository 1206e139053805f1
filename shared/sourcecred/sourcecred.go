// Package sourcecred keeps the source passwords users proved at sign-in,
// for the mailboxes whose source credential nobody else has (MailEnable
// accounts whose AUTH.TAB password is missing or unusable): the auth
// service hands the proven password over once, encrypted with the
// operator's key (AES-256-GCM, the associated data binding it to its
// mailbox), into a JetStream key-value bucket whose entries expire
// (nats.source_credential_ttl); the extractor, verify and cutover plan
// open it to log in to the source as that user; whoever ends the
// mailbox's migration deletes it (see Forget). A password is never
// logged, published, put in an error or on a command line.
//
// The key file holds 32 random bytes: raw, as 64 hexadecimal digits or
// in standard base64 (a trailing newline is ignored), mode 0600 or 0400
// (deploy/nats/make-secrets.sh makes one in hex). The same file is
// auth.source_credentials.key_file for the writer and
// source.credential_key_file for the readers.
package sourcecred

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/mailferry/mailferry/shared/broker"
	"github.com/mailferry/mailferry/shared/config"
	"github.com/mailferry/mailferry/shared/imapdial"
	"github.com/mailferry/mailferry/shared/job"
	"github.com/mailferry/mailferry/shared/subject"
)

// Bucket is the key-value bucket of the handed-off credentials (owned by
// the auth service: shared/broker declares it).
const Bucket = broker.BucketSourceCredentials

// KeySize is the key's length in bytes (AES-256).
const KeySize = 32

// version is the first byte of a sealed value, so that a later format
// can be told apart.
const version = 1

// adPrefix starts the associated data; the mailbox follows.
const adPrefix = "mailferry source credential v1\x00"

// ErrWaiting means the mailbox has no source password: neither a password
// file nor a credential its user handed over at sign-in.
var ErrWaiting = errors.New("no source password: waiting for its user to sign in on the change page")

// ErrUndecryptable means a stored credential does not open with the
// key: another key, or a value written for another mailbox.
var ErrUndecryptable = errors.New("the stored source credential does not decrypt with source.credential_key_file: another key, or a value not written for this mailbox")

// ErrUnavailable wraps a failure to read the bucket: worth trying again,
// unlike the other errors of CredentialsFor.
var ErrUnavailable = errors.New("the source credentials bucket cannot be read now")

// Key seals and opens credentials. Its zero value is unusable: see
// LoadKey and ParseKey.
type Key struct{ aead cipher.AEAD }

// String never shows the key.
func (k *Key) String() string { return "sourcecred.Key(redacted)" }

// LoadKey reads the key file at path, refusing one that its group or
// others may read or write.
func LoadKey(path string) (*Key, error) {
	if path == "" {
		return nil, errors.New("source credential key: no key file configured")
	}
	raw, err := config.ReadSecretFile(path)
	if err != nil {
		return nil, fmt.Errorf("source credential key: %w", err)
	}
	k, err := ParseKey(raw)
	if err != nil {
		return nil, fmt.Errorf("source credential key %s: %w", path, err)
	}
	return k, nil
}

// ParseKey reads 32 bytes: raw, 64 hexadecimal digits or standard
// base64, surrounding white space ignored for the two text forms.
func ParseKey(raw []byte) (*Key, error) {
	var b []byte
	text := bytes.TrimSpace(raw)
	switch {
	case len(raw) == KeySize:
		if printable(raw) {
			// Random bytes are all printable once in 10^14: this is a
			// passphrase or a short hex key, not 32 random bytes.
			return nil, errors.New("want 32 random bytes: these 32 are all printable characters (a passphrase, or a 16-byte hex key?)")
		}
		b = raw
	case len(text) == 2*KeySize:
		d, err := hex.DecodeString(string(text))
		if err != nil {
			return nil, errors.New("want 32 bytes: raw, 64 hexadecimal digits or base64 (64 characters that are not hexadecimal)")
		}
		b = d
	default:
		d, err := base64.StdEncoding.DecodeString(string(text))
		if err != nil || len(d) != KeySize {
			return nil, fmt.Errorf("want 32 bytes: raw, 64 hexadecimal digits or base64 (got %d bytes that are none of these)", len(raw))
		}
		b = d
	}
	block, err := aes.NewCipher(b)
	if err != nil {
		return nil, fmt.Errorf("aes: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("gcm: %w", err)
	}
	return &Key{aead: aead}, nil
}

func printable(b []byte) bool {
	for _, c := range b {
		if c < 0x20 || c > 0x7e {
			return false
		}
	}
	return true
}

// NewKeyText returns a new random key as 64 hexadecimal digits.
func NewKeyText() string {
	b := make([]byte, KeySize)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func associated(mailbox string) []byte { return []byte(adPrefix + mailbox) }

// Seal encrypts password for mailbox (the source login): version, nonce,
// ciphertext and tag.
func (k *Key) Seal(mailbox, password string) []byte {
	nonce := make([]byte, k.aead.NonceSize(), 1+k.aead.NonceSize()+len(password)+k.aead.Overhead())
	_, _ = rand.Read(nonce)
	out := append([]byte{version}, nonce...)
	return k.aead.Seal(out, nonce, []byte(password), associated(mailbox))
}

// Open decrypts what Seal made for mailbox; ErrUndecryptable when the
// key or the mailbox is not the one it was sealed with.
func (k *Key) Open(mailbox string, sealed []byte) (string, error) {
	n := k.aead.NonceSize()
	if len(sealed) < 1+n+k.aead.Overhead() || sealed[0] != version {
		return "", ErrUndecryptable
	}
	pt, err := k.aead.Open(nil, sealed[1:1+n], sealed[1+n:], associated(mailbox))
	if err != nil {
		return "", ErrUndecryptable
	}
	return string(pt), nil
}

// KeyOf is the bucket key of mailbox's credential.
func KeyOf(mailbox string) string { return subject.Key(mailbox) }

// Store is the credentials bucket with the key that opens it.
type Store struct {
	KV  jetstream.KeyValue
	Key *Key
}

// HandOff stores password as mailbox's credential unless one is stored
// already: created says whether this call stored it, so that of many
// concurrent hand-offs of one mailbox exactly one goes on to start its
// migration.
func (s *Store) HandOff(ctx context.Context, mailbox, password string) (created bool, err error) {
	_, err = s.KV.Create(ctx, KeyOf(mailbox), s.Key.Seal(mailbox, password))
	if errors.Is(err, jetstream.ErrKeyExists) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("store the source credential of %s: %w", mailbox, err)
	}
	return true, nil
}

// Password returns mailbox's credential: ErrWaiting when there is none.
func (s *Store) Password(ctx context.Context, mailbox string) (string, error) {
	e, err := s.KV.Get(ctx, KeyOf(mailbox))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return "", ErrWaiting
	}
	if err != nil {
		return "", fmt.Errorf("read the source credential of %s: %w: %w", mailbox, ErrUnavailable, err)
	}
	return s.Key.Open(mailbox, e.Value())
}

// Forget deletes the credentials of mailboxes (those without one are
// skipped): once a mailbox's migration has ended, its password must not
// lie about until the entry expires.
func Forget(ctx context.Context, kv jetstream.KeyValue, mailboxes ...string) (int, error) {
	n := 0
	for _, mb := range mailboxes {
		if _, err := kv.Get(ctx, KeyOf(mb)); errors.Is(err, jetstream.ErrKeyNotFound) {
			continue
		} else if err != nil {
			return n, fmt.Errorf("read the source credential of %s: %w", mb, err)
		}
		if err := kv.Purge(ctx, KeyOf(mb)); err != nil {
			return n, fmt.Errorf("delete the source credential of %s: %w", mb, err)
		}
		n++
	}
	return n, nil
}

// Has reports whether mailbox has a credential stored (without opening
// it: for status, which holds no key).
func Has(ctx context.Context, kv jetstream.KeyValue, mailbox string) (bool, error) {
	_, err := kv.Get(ctx, KeyOf(mailbox))
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("read the source credential of %s: %w", mailbox, err)
	}
	return true, nil
}

// Bind returns the credentials bucket, or nil when it does not exist (no
// credential was ever handed over).
func Bind(ctx context.Context, js jetstream.JetStream) (jetstream.KeyValue, error) {
	kv, err := js.KeyValue(ctx, Bucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("bind bucket %s: %w: %w", Bucket, ErrUnavailable, err)
	}
	return kv, nil
}

// NeedsCredential reports whether logging in to the source as mb needs a
// handed-off credential: per-user source logins and no password file.
func NeedsCredential(cfg *config.Config, passwordFile string) bool {
	return cfg.Source.Auth == config.AuthUser && passwordFile == ""
}

// CredentialsFor is imapdial.CredentialsFor for the source that, for a
// mailbox without a password file, uses the credential its user handed
// over (js nil: none can be read). The error is ErrWaiting (wrapped)
// when there is none.
func CredentialsFor(ctx context.Context, js jetstream.JetStream, cfg *config.Config, user, passwordFile string) (imapdial.Credentials, error) {
	if !NeedsCredential(cfg, passwordFile) {
		return imapdial.CredentialsFor(cfg, "source", user, passwordFile)
	}
	if cfg.Source.CredentialKeyFile == "" || js == nil {
		return imapdial.Credentials{}, fmt.Errorf("source password of %s: %w (and no source.credential_key_file to read one with)", user, ErrWaiting)
	}
	kv, err := Bind(ctx, js)
	if err != nil {
		return imapdial.Credentials{}, err
	}
	if kv == nil {
		return imapdial.Credentials{}, fmt.Errorf("source password of %s: %w", user, ErrWaiting)
	}
	key, err := LoadKey(cfg.Source.CredentialKeyFile)
	if err != nil {
		return imapdial.Credentials{}, err
	}
	pw, err := (&Store{KV: kv, Key: key}).Password(ctx, user)
	if err != nil {
		return imapdial.Credentials{}, fmt.Errorf("source password of %s: %w", user, err)
	}
	return imapdial.Credentials{User: user, Password: pw}, nil
}

// Waiting returns the source users of boxes whose logins need a
// credential from their user's sign-in (NeedsCredential) and have none
// stored, in boxes' order: the mailboxes waiting for their user. Whether
// a mailbox's migration already ended (its credential deleted after its
// last pass) is the caller's to tell.
func Waiting(ctx context.Context, js jetstream.JetStream, cfg *config.Config, boxes []job.Mailbox) ([]string, error) {
	var out []string
	var kv jetstream.KeyValue
	for i, mb := range boxes {
		if !NeedsCredential(cfg, mb.SourcePasswordFile) {
			continue
		}
		if kv == nil {
			var err error
			if kv, err = Bind(ctx, js); err != nil {
				return nil, err
			}
			if kv == nil {
				// No credential was ever handed over.
				for _, mb := range boxes[i:] {
					if NeedsCredential(cfg, mb.SourcePasswordFile) {
						out = append(out, mb.SourceUser)
					}
				}
				return out, nil
			}
		}
		has, err := Has(ctx, kv, mb.SourceUser)
		if err != nil {
			return nil, err
		}
		if !has {
			out = append(out, mb.SourceUser)
		}
	}
	return out, nil
}
