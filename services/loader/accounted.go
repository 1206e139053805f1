package loader

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/mailferry/mailferry/shared/subject"
)

// accounted counts, by content, the messages the ledger says this mailbox
// put into a target folder at or above target UID from (any source folder
// mapped there: merged special-use folders share one target). A content
// match against the target must leave those alone, or the second of two
// identical messages from different source folders would be taken for the
// first. skip leaves out the entries of some source messages (the ones a
// retry is about to append again).
func (ss *session) accounted(ctx context.Context, target string, from uint32, skip func(folder string, uid uint32) bool) (map[string]int, error) {
	out := map[string]int{}
	kv := ss.svc.Broker.Ledger
	keys, err := kv.ListKeysFiltered(ctx, "map."+subject.Key(ss.j.SourceUser)+".>")
	if err != nil {
		return nil, fmt.Errorf("list ledger mappings: %w", err)
	}
	defer keys.Stop()
	for key := range keys.Keys() {
		e, err := kv.Get(ctx, key)
		if err != nil {
			return nil, fmt.Errorf("read ledger %s: %w", key, err)
		}
		var m Mapping
		if err := json.Unmarshal(e.Value(), &m); err != nil {
			return nil, fmt.Errorf("decode ledger %s: %w", key, err)
		}
		if m.TargetFolder != target || m.How != howAppended {
			continue
		}
		for _, it := range m.Items {
			if it.TargetUID >= from && (skip == nil || !skip(m.Folder, it.UID)) {
				out[it.SHA256]++
			}
		}
	}
	return out, nil
}

// subtract removes the accounted content from a target's content index.
func subtract(index, accounted map[string]int) {
	for h, n := range accounted {
		if index[h] <= n {
			delete(index, h)
			continue
		}
		index[h] -= n
	}
}
