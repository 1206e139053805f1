package loader

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/mailferry/mailferry/shared/subject"
)

// accountedContent is what the ledger says this mailbox put into one
// target folder, by the content of the copies there.
type accountedContent struct {
	// others counts the copies of messages other than the ones being
	// loaded, by the hash of what the target stored.
	others map[string]int
	// altered lists, for messages being loaded that the target stored
	// altered, the stored copy's hash with the source's.
	altered []storedAs
}

// storedAs pairs the hash of a copy a target altered with its source's.
type storedAs struct{ stored, source string }

// accounted reads, by content, the messages the ledger says this mailbox
// put into a target folder at or above target UID from (any source folder
// mapped there: merged special-use folders share one target). A content
// match against the target must leave those alone, or the second of two
// identical messages from different source folders would be taken for the
// first. skip leaves out the entries of some source messages (the ones
// being loaded or delivered again); of those, only the altered copies are
// noted, so that such a copy is recognised as its source message.
func (ss *session) accounted(ctx context.Context, target string, from uint32, skip func(folder string, uid uint32) bool) (accountedContent, error) {
	out := accountedContent{others: map[string]int{}}
	kv := ss.svc.Broker.Ledger
	keys, err := kv.ListKeysFiltered(ctx, "map."+subject.Key(ss.j.SourceUser)+".>")
	if err != nil {
		return out, fmt.Errorf("list ledger mappings: %w", err)
	}
	defer keys.Stop()
	for key := range keys.Keys() {
		e, err := kv.Get(ctx, key)
		if err != nil {
			return out, fmt.Errorf("read ledger %s: %w", key, err)
		}
		var m Mapping
		if err := json.Unmarshal(e.Value(), &m); err != nil {
			return out, fmt.Errorf("decode ledger %s: %w", key, err)
		}
		if m.TargetFolder != target || m.How != howAppended {
			continue
		}
		for _, it := range m.Items {
			if it.TargetUID < from {
				continue
			}
			if skip == nil || !skip(m.Folder, it.UID) {
				out.others[it.Stored()]++
			} else if it.StoredSHA256 != "" {
				out.altered = append(out.altered, storedAs{stored: it.StoredSHA256, source: it.SHA256})
			}
		}
	}
	return out, nil
}

// subtract removes the accounted content from a target's content index,
// and files the altered copies of the messages being loaded under their
// sources' hashes: the copy Dovecot made of a message with a NUL byte is
// that message, already there.
func subtract(index map[string]int, acc accountedContent) {
	for h, n := range acc.others {
		if index[h] <= n {
			delete(index, h)
			continue
		}
		index[h] -= n
	}
	for _, a := range acc.altered {
		if index[a.stored] == 0 {
			continue
		}
		if index[a.stored]--; index[a.stored] == 0 {
			delete(index, a.stored)
		}
		index[a.source]++
	}
}
