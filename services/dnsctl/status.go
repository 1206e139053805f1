package dnsctl

import (
	"context"
	"slices"
	"strings"

	"github.com/mailferry/mailferry/services/dnsctl/journal"
)

// Status returns the journal entries of domains (nil: of every journaled
// domain), sorted by domain. Domains without an entry are left out.
func (e *Engine) Status(ctx context.Context, domains []string) ([]*journal.Entry, error) {
	xs, err := e.entries(ctx, domains)
	if err != nil {
		return nil, err
	}
	var out []*journal.Entry
	for _, x := range xs {
		if x.entry != nil {
			out = append(out, x.entry)
		}
	}
	slices.SortFunc(out, func(a, b *journal.Entry) int { return strings.Compare(a.Domain, b.Domain) })
	return out, nil
}
