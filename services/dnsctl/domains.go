package dnsctl

import (
	"bufio"
	"fmt"
	"os"
	"strings"

	"github.com/miekg/dns"
)

// ReadDomains reads a domains file: one domain per line; blank lines and
// lines starting with '#' are ignored; duplicates are dropped. Domains come
// back lower-case and fully qualified, in file order.
func ReadDomains(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read domains: %w", err)
	}
	defer f.Close()
	var out []string
	seen := map[string]bool{}
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		d, err := CanonicalDomain(line)
		if err != nil {
			return nil, fmt.Errorf("domains file %s line %d: %w", path, n, err)
		}
		if !seen[d] {
			seen[d] = true
			out = append(out, d)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read domains %s: %w", path, err)
	}
	return out, nil
}

// CanonicalDomain checks a domain name and returns it lower-case and
// fully qualified.
func CanonicalDomain(s string) (string, error) {
	if _, ok := dns.IsDomainName(s); !ok || strings.ContainsAny(s, " \t*") || s == "." {
		return "", fmt.Errorf("%q is not a domain name", s)
	}
	return dns.CanonicalName(s), nil
}

func trimDot(d string) string { return strings.TrimSuffix(d, ".") }
