package verify

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/mailferry/mailferry/shared/imapdial"
	"github.com/mailferry/mailferry/shared/mailscan"
)

// resync sets the flags of the target copies that ds names with a flags
// difference to their source message's (see ResyncFlags) and returns the
// differences left and those repaired. The source flags are read again,
// as the source spells them, so keywords keep their case. A folder whose
// UIDVALIDITY changed since the scan is left alone on either side: its
// UIDs name other messages now. Only an error of the connection itself is
// returned; a refused STORE stays with its difference.
func resync(ctx context.Context, src, tgt *imapclient.Client, target string, srcValidity map[string]uint32, tgtValidity uint32, ds []Diff, idle time.Duration) (diffs, done []Diff, err error) {
	byFolder := map[string][]uint32{}
	var todo []int
	for i, d := range ds {
		if d.Kind == KindFlags && d.TargetUID != 0 {
			todo = append(todo, i)
			byFolder[d.Folder] = append(byFolder[d.Folder], d.UID)
		}
	}
	if len(todo) == 0 {
		return ds, nil, nil
	}
	// The source's flags now, by folder and UID.
	want := map[copyKey][]imap.Flag{}
	for _, folder := range sortedKeys(byFolder) {
		flags, err := fetchFlags(ctx, src, folder, byFolder[folder], true, srcValidity[folder], idle)
		if err != nil {
			return ds, nil, fmt.Errorf("resync flags: source: %w", err)
		}
		for uid, f := range flags {
			want[copyKey{folder, uid}] = f
		}
	}

	wd := imapdial.Watch(ctx, tgt, idle)
	sel, err := tgt.Select(target, nil).Wait()
	if err != nil {
		wd.Stop()
		return ds, nil, fmt.Errorf("resync flags: target: select %q: %w", target, wd.Err(err))
	}
	if sel.UIDValidity != tgtValidity {
		wd.Stop()
		return ds, nil, nil
	}
	permitted := permits(sel.PermanentFlags)
	// One STORE per set of flags: mostly many messages get \Seen.
	type store struct {
		flags []imap.Flag
		uids  []uint32
		idx   []int
	}
	stores := map[string]*store{}
	var order []string
	for _, i := range todo {
		d := &ds[i]
		flags, ok := want[copyKey{d.Folder, d.UID}]
		if !ok {
			continue // gone from the source since the scan
		}
		var keep []imap.Flag
		var refused []string
		for _, f := range flags {
			switch {
			case strings.EqualFold(string(f), `\Recent`):
			case permitted(f):
				keep = append(keep, f)
			default:
				refused = append(refused, string(f))
			}
		}
		d.Want = strings.Join(mailscan.NormalizeFlags(flags), " ")
		d.Refused = mailscan.NormalizeFlags(toFlags(refused))
		if len(d.Refused) == 0 {
			d.Refused = nil
		}
		key := strings.Join(mailscan.NormalizeFlags(keep), " ")
		s := stores[key]
		if s == nil {
			s = &store{flags: keep}
			stores[key] = s
			order = append(order, key)
		}
		s.uids = append(s.uids, d.TargetUID)
		s.idx = append(s.idx, i)
	}
	var stored []uint32
	for _, key := range order {
		s := stores[key]
		for start := 0; start < len(s.uids); start += uidBatch {
			end := min(start+uidBatch, len(s.uids))
			set := imap.UIDSet{}
			for _, u := range s.uids[start:end] {
				set.AddNum(imap.UID(u))
			}
			wd.Kick()
			cmd := tgt.Store(set, &imap.StoreFlags{Op: imap.StoreFlagsSet, Silent: true, Flags: s.flags}, nil)
			if err := cmd.Close(); err != nil {
				if !isCommandRefused(err) {
					wd.Stop()
					return ds, nil, fmt.Errorf("resync flags: target: store %q: %w", target, wd.Err(err))
				}
				for _, i := range s.idx[start:end] {
					ds[i].ResyncError = fmt.Sprintf("UID STORE %d FLAGS.SILENT (%s): %v", ds[i].TargetUID, key, err)
				}
				continue
			}
			stored = append(stored, s.uids[start:end]...)
		}
	}
	wd.Stop()

	// What the target holds now decides: a server may drop what it
	// accepted.
	now, err := fetchFlags(ctx, tgt, target, stored, false, tgtValidity, idle)
	if err != nil {
		return ds, nil, fmt.Errorf("resync flags: target: %w", err)
	}
	for _, d := range ds {
		f, ok := now[d.TargetUID]
		if d.Kind != KindFlags || d.TargetUID == 0 || !ok || d.ResyncError != "" {
			diffs = append(diffs, d)
			continue
		}
		got := strings.Join(mailscan.NormalizeFlags(f), " ")
		if got == d.Want {
			d.Kind, d.Refused = KindResynced, nil
			done = append(done, d)
			continue
		}
		d.Got = got
		diffs = append(diffs, d)
	}
	return diffs, done, nil
}

// fetchFlags selects folder (read-only with examine) and returns the
// flags, as the server spells them, of those of uids it holds; none when
// its UIDVALIDITY is no longer validity. A folder not selected read-only
// stays selected for the caller's STOREs.
func fetchFlags(ctx context.Context, c *imapclient.Client, folder string, uids []uint32, examine bool, validity uint32, idle time.Duration) (map[uint32][]imap.Flag, error) {
	out := map[uint32][]imap.Flag{}
	if len(uids) == 0 {
		return out, nil
	}
	wd := imapdial.Watch(ctx, c, idle)
	defer wd.Stop()
	if examine {
		sel, err := c.Select(folder, &imap.SelectOptions{ReadOnly: true}).Wait()
		if err != nil {
			return nil, fmt.Errorf("examine %q: %w", folder, wd.Err(err))
		}
		if sel.UIDValidity != validity {
			return out, nil
		}
	}
	asked := make(map[uint32]bool, len(uids))
	for _, u := range uids {
		asked[u] = true
	}
	for start := 0; start < len(uids); start += uidBatch {
		set := imap.UIDSet{}
		for _, u := range uids[start:min(start+uidBatch, len(uids))] {
			set.AddNum(imap.UID(u))
		}
		cmd := c.Fetch(set, &imap.FetchOptions{UID: true, Flags: true})
		for {
			msg := cmd.Next()
			if msg == nil {
				break
			}
			wd.Kick()
			buf, err := msg.Collect()
			if err != nil {
				continue // reported by Close
			}
			// A server may add unsolicited FETCHes of others.
			if asked[uint32(buf.UID)] {
				out[uint32(buf.UID)] = buf.Flags
			}
		}
		if err := cmd.Close(); err != nil {
			return nil, fmt.Errorf("fetch flags of %q: %w", folder, wd.Err(err))
		}
	}
	return out, nil
}

// uidBatch bounds the UIDs of one STORE or FETCH, so that a scattered set
// does not make a command line longer than servers accept.
const uidBatch = 500

// permits is whether the target keeps a flag, by its PERMANENTFLAGS: a
// listed flag, and any keyword when \* is listed. A server that sends
// none says nothing, so everything is tried (and read back).
func permits(permanent []imap.Flag) func(imap.Flag) bool {
	return func(f imap.Flag) bool {
		if len(permanent) == 0 {
			return true
		}
		for _, p := range permanent {
			if strings.EqualFold(string(p), string(f)) || p == imap.FlagWildcard && !strings.HasPrefix(string(f), `\`) {
				return true
			}
		}
		return false
	}
}

// isCommandRefused reports whether err is the server's NO or BAD to one
// command, after which the connection is still good.
func isCommandRefused(err error) bool {
	var ierr *imap.Error
	return errors.As(err, &ierr)
}

func toFlags(ss []string) []imap.Flag {
	out := make([]imap.Flag, len(ss))
	for i, s := range ss {
		out[i] = imap.Flag(s)
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
