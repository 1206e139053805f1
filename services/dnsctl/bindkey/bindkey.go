// Package bindkey reads TSIG keys from BIND key files, the format
// tsig-keygen writes and named.conf includes:
//
//	key "dnsctl-key" {
//		algorithm hmac-sha256;
//		secret "base64...";
//	};
//
// A Key formats without its secret, and no error of this package contains
// it, so a key can be logged or wrapped in an error safely.
package bindkey

import (
	"encoding/base64"
	"errors"
	"fmt"
	"strings"

	"github.com/miekg/dns"

	"github.com/mailferry/mailferry/shared/config"
)

// Key is one TSIG key.
type Key struct {
	// Name is the key's name as a lower-case fully qualified domain name,
	// the form miekg/dns looks secrets up by.
	Name string
	// Algorithm is the TSIG algorithm name, e.g. dns.HmacSHA256.
	Algorithm string
	secret    string
}

// New returns a key; secret is base64 as in a key file.
func New(name, algorithm, secret string) (Key, error) {
	alg, ok := algorithms[strings.ToLower(strings.TrimSuffix(algorithm, "."))]
	if !ok {
		// Never quote the value: a key file with its fields swapped
		// would print its secret here.
		return Key{}, fmt.Errorf("key %s: unsupported algorithm (a value of %d characters; want an hmac-sha* or hmac-md5 name)", name, len(algorithm))
	}
	if _, err := base64.StdEncoding.DecodeString(secret); err != nil || secret == "" {
		// The decoder's error quotes an offset, never the secret; still,
		// say only what is wrong.
		return Key{}, fmt.Errorf("key %s: secret is not base64", name)
	}
	return Key{Name: dns.CanonicalName(name), Algorithm: alg, secret: secret}, nil
}

// algorithms maps the names BIND accepts to the names on the wire.
var algorithms = map[string]string{
	"hmac-md5":                 dns.HmacMD5,
	"hmac-md5.sig-alg.reg.int": dns.HmacMD5,
	"hmac-sha1":                dns.HmacSHA1,
	"hmac-sha224":              dns.HmacSHA224,
	"hmac-sha256":              dns.HmacSHA256,
	"hmac-sha384":              dns.HmacSHA384,
	"hmac-sha512":              dns.HmacSHA512,
}

// Secret returns the base64 secret.
func (k Key) Secret() string { return k.secret }

// Secrets returns the map miekg/dns clients take as TsigSecret.
func (k Key) Secrets() map[string]string { return map[string]string{k.Name: k.secret} }

// String names the key and its algorithm, never its secret.
func (k Key) String() string { return fmt.Sprintf("key %s (%s)", k.Name, k.Algorithm) }

// GoString is String, so %#v does not print the secret either.
func (k Key) GoString() string { return k.String() }

// ReadFile reads the key called name from a BIND key file; an empty name
// selects the file's only key.
func ReadFile(path, name string) (Key, error) {
	b, err := config.ReadSecretFile(path)
	if err != nil {
		return Key{}, fmt.Errorf("read tsig key file: %w", err)
	}
	keys, err := Parse(string(b))
	if err != nil {
		return Key{}, fmt.Errorf("tsig key file %s: %w", path, err)
	}
	k, err := pick(keys, name)
	if err != nil {
		return Key{}, fmt.Errorf("tsig key file %s: %w", path, err)
	}
	return k, nil
}

func pick(keys []Key, name string) (Key, error) {
	if name == "" {
		if len(keys) != 1 {
			return Key{}, fmt.Errorf("%d keys: name the one to use (tsig_key_name)", len(keys))
		}
		return keys[0], nil
	}
	want := dns.CanonicalName(name)
	for _, k := range keys {
		if k.Name == want {
			return k, nil
		}
	}
	return Key{}, fmt.Errorf("no key named %s", want)
}

// Parse reads every key statement of a BIND configuration fragment;
// other statements are skipped.
func Parse(text string) ([]Key, error) {
	toks, err := tokenize(text)
	if err != nil {
		return nil, err
	}
	p := &parser{toks: toks}
	var keys []Key
	for !p.done() {
		if p.peek() != "key" {
			if err := p.skipStatement(); err != nil {
				return nil, err
			}
			continue
		}
		k, err := p.key()
		if err != nil {
			return nil, err
		}
		keys = append(keys, k)
	}
	if len(keys) == 0 {
		return nil, errors.New("no key statement")
	}
	return keys, nil
}

type parser struct {
	toks []string
	i    int
}

func (p *parser) done() bool   { return p.i >= len(p.toks) }
func (p *parser) peek() string { return p.toks[p.i] }

func (p *parser) next() (string, error) {
	if p.done() {
		return "", errors.New("unexpected end of file")
	}
	t := p.toks[p.i]
	p.i++
	return t, nil
}

func (p *parser) expect(want string) error {
	t, err := p.next()
	if err != nil {
		return fmt.Errorf("want %q: %w", want, err)
	}
	if t != want {
		return fmt.Errorf("want %q, found a different token", want)
	}
	return nil
}

// key parses: key NAME { algorithm ALG; secret "S"; };
func (p *parser) key() (Key, error) {
	p.i++ // "key"
	name, err := p.next()
	if err != nil {
		return Key{}, fmt.Errorf("key statement: %w", err)
	}
	name = unquote(name)
	if err := p.expect("{"); err != nil {
		return Key{}, fmt.Errorf("key %s: %w", name, err)
	}
	var alg, secret string
	for {
		t, err := p.next()
		if err != nil {
			return Key{}, fmt.Errorf("key %s: %w", name, err)
		}
		if t == "}" {
			break
		}
		v, err := p.next()
		if err != nil {
			return Key{}, fmt.Errorf("key %s: %w", name, err)
		}
		switch t {
		case "algorithm":
			alg = unquote(v)
		case "secret":
			secret = unquote(v)
		}
		if err := p.expect(";"); err != nil {
			return Key{}, fmt.Errorf("key %s, after %s: %w", name, t, err)
		}
	}
	if err := p.expect(";"); err != nil {
		return Key{}, fmt.Errorf("key %s: %w", name, err)
	}
	if alg == "" || secret == "" {
		return Key{}, fmt.Errorf("key %s: needs algorithm and secret", name)
	}
	return New(name, alg, secret)
}

// skipStatement skips one statement, nested blocks included.
func (p *parser) skipStatement() error {
	depth := 0
	for !p.done() {
		t, _ := p.next()
		switch t {
		case "{":
			depth++
		case "}":
			depth--
		case ";":
			if depth == 0 {
				return nil
			}
		}
	}
	if depth != 0 {
		return errors.New("unbalanced braces")
	}
	return nil
}

func unquote(s string) string {
	if len(s) >= 2 && s[0] == '"' && s[len(s)-1] == '"' {
		return s[1 : len(s)-1]
	}
	return s
}

// tokenize splits named.conf syntax into words, quoted strings (kept with
// their quotes), braces and semicolons, dropping #, // and /* */ comments.
func tokenize(s string) ([]string, error) {
	var toks []string
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case c == '#' || strings.HasPrefix(s[i:], "//"):
			for i < len(s) && s[i] != '\n' {
				i++
			}
		case strings.HasPrefix(s[i:], "/*"):
			end := strings.Index(s[i+2:], "*/")
			if end < 0 {
				return nil, errors.New("unterminated /* comment")
			}
			i += end + 4
		case c == '{' || c == '}' || c == ';':
			toks = append(toks, string(c))
			i++
		case c == '"':
			end := strings.IndexByte(s[i+1:], '"')
			if end < 0 {
				return nil, errors.New("unterminated quoted string")
			}
			toks = append(toks, s[i:i+end+2])
			i += end + 2
		default:
			j := i
			for j < len(s) && !strings.ContainsRune(" \t\r\n{};\"#", rune(s[j])) {
				j++
			}
			toks = append(toks, s[i:j])
			i = j
		}
	}
	return toks, nil
}
