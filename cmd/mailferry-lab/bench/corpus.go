package bench

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/mailferry/mailferry/shared/mailgen"
	"github.com/mailferry/mailferry/shared/testenv/dovecottest"
)

// Shape of the generated corpus.
const (
	// medianSize and sizeSigma make message sizes lognormal: half of the
	// messages are below 8 KiB, about 0.7 % above 256 KiB, a few above
	// 1 MiB.
	medianSize = 8 << 10
	sizeSigma  = 1.4
	// minSize is about the size of the headers alone.
	minSize = 700
	// bigEvery adds, without a volume to reach, one message of several
	// MB (max-size/8..max-size/2) per bigEvery messages, at least one.
	bigEvery = 2500
	// defaultVolume is the corpus's total size by default: with 10,000
	// messages, the corpus of issue 12 (about 600 MB).
	defaultVolume = 600_000_000
	// seedChunk bounds the bytes generated before they are written to the
	// source, so the benchmark's own memory stays small.
	seedChunk = 16 << 20
)

// meanSize is about the mean of the lognormal sizes,
// medianSize·exp(sizeSigma²/2) rounded up.
const meanSize = 3 * medianSize

// minVolume is the smallest -volume a corpus of messages messages reaches
// without going over: their lognormal sizes and one message of maxSize.
func minVolume(messages int, maxSize int64) int64 {
	return int64(messages)*meanSize + maxSize
}

// folderWeight is the share of a mailbox's messages a folder gets.
func folderWeight(name string, rng *rand.Rand) float64 {
	switch name {
	case "INBOX":
		return 5
	case "Sent":
		return 2
	case "Drafts":
		return 0.15
	case "Trash", "Junk":
		return 0.4 * rng.Float64()
	}
	return 0.3 + rng.Float64()
}

// Corpus describes the generated corpus as seeded into the source.
type Corpus struct {
	Mailboxes int     `json:"mailboxes"`
	Folders   int     `json:"folders"`
	Messages  int     `json:"messages"`
	Bytes     int64   `json:"bytes"`
	Largest   int64   `json:"largest_bytes"`
	Median    int64   `json:"median_bytes"`
	Over1MB   int     `json:"over_1mb"`
	Seed      uint64  `json:"seed"`
	Seconds   float64 `json:"seed_seconds"`
}

// SeedCorpus plans and seeds the corpus `mailferry bench` uses (long-tailed
// sizes up to maxSize, special-use, nested and non-ASCII folders, flags,
// keywords, dates) for users into src: the same seed gives the same mail.
// Its tail is a few messages of several MB, without a total to reach (see
// planCorpus).
func SeedCorpus(ctx context.Context, src *dovecottest.Server, users []string, messages int, maxSize int64, seed uint64) (*Corpus, error) {
	rng := newRand(seed)
	return seedCorpus(ctx, src, planCorpus(users, messages, maxSize, 0, rng), rng, seed)
}

// mailboxPlan is what one mailbox will hold.
type mailboxPlan struct {
	user    string
	folders []folderPlan
}

type folderPlan struct {
	name  string
	sizes []int64
}

// newRand returns the corpus generator for seed.
func newRand(seed uint64) *rand.Rand { return mailgen.Rand(seed) }

// planCorpus decides mailboxes, folders and message sizes. It draws from
// rng in a fixed order, so a seed always gives the same corpus.
//
// Sizes are lognormal (median medianSize), then the long tail is made
// sure of: one message just below maxSize and messages of several MB
// (maxSize/8..maxSize/2) at random places. With volume > 0 the tail grows
// until the corpus totals volume bytes (its last message cut to fit),
// unless the lognormal sizes and the largest message already exceed it;
// without, it has one such message per bigEvery messages.
func planCorpus(users []string, messages int, maxSize, volume int64, rng *rand.Rand) []mailboxPlan {
	// Mailbox sizes vary by up to a factor of three.
	weights := make([]float64, len(users))
	for i := range weights {
		weights[i] = 0.5 + rng.Float64()
	}
	counts := apportion(messages, weights)

	plans := make([]mailboxPlan, len(users))
	type pos struct{ mb, f, i int }
	var all []pos
	for i, u := range users {
		names := slices.Clone(mailgen.Special)
		k := 2 + rng.IntN(5)
		for _, j := range rng.Perm(len(mailgen.Nested))[:k] {
			names = append(names, mailgen.Nested[j])
		}
		fw := make([]float64, len(names))
		var sum float64
		for j, n := range names {
			fw[j] = folderWeight(n, rng)
			sum += fw[j]
		}
		p := mailboxPlan{user: u, folders: make([]folderPlan, len(names))}
		for j, n := range names {
			p.folders[j].name = n
		}
		for range counts[i] {
			j := pick(fw, sum, rng)
			p.folders[j].sizes = append(p.folders[j].sizes, lognormalSize(rng, maxSize))
		}
		for j, f := range p.folders {
			for k := range f.sizes {
				all = append(all, pos{i, j, k})
			}
		}
		plans[i] = p
	}
	if len(all) == 0 {
		return plans
	}
	var total int64
	for _, p := range all {
		total += plans[p.mb].folders[p.f].sizes[p.i]
	}
	// The long tail for sure: one message just below max-size and more of
	// several MB, at random places.
	big := 1 + max(1, messages/bigEvery)
	if volume > 0 {
		big = len(all)
	}
	perm := rng.Perm(len(all))
	for n, idx := range perm[:min(big, len(perm))] {
		if volume > 0 && n > 0 && total >= volume {
			break
		}
		p := all[idx]
		old := plans[p.mb].folders[p.f].sizes[p.i]
		size := maxSize - rng.Int64N(maxSize/100+1)
		if n > 0 {
			size = maxSize/8 + rng.Int64N(maxSize/2-maxSize/8+1)
			if volume > 0 && total-old+size > volume {
				// The last one fills exactly what is left.
				size = max(old, volume-total+old)
			}
		}
		size = max(size, minSize)
		plans[p.mb].folders[p.f].sizes[p.i] = size
		total += size - old
	}
	return plans
}

// apportion splits total into len(weights) integers proportional to the
// weights (largest remainder).
func apportion(total int, weights []float64) []int {
	var sum float64
	for _, w := range weights {
		sum += w
	}
	out := make([]int, len(weights))
	rem := make([]float64, len(weights))
	given := 0
	for i, w := range weights {
		exact := float64(total) * w / sum
		out[i] = int(exact)
		rem[i] = exact - float64(out[i])
		given += out[i]
	}
	order := make([]int, len(weights))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int {
		switch {
		case rem[a] > rem[b]:
			return -1
		case rem[a] < rem[b]:
			return 1
		}
		return 0
	})
	for i := 0; given < total; i++ {
		out[order[i%len(order)]]++
		given++
	}
	return out
}

func pick(weights []float64, sum float64, rng *rand.Rand) int {
	x := rng.Float64() * sum
	for i, w := range weights {
		if x < w {
			return i
		}
		x -= w
	}
	return len(weights) - 1
}

func lognormalSize(rng *rand.Rand, maxSize int64) int64 {
	return mailgen.Sizes{Median: medianSize, Sigma: sizeSigma, Min: minSize, Max: maxSize}.Draw(rng)
}

// seedCorpus generates the planned messages and writes them into the
// source, in chunks so that memory stays bounded, subscribes every folder
// and has Dovecot index every mailbox, so no tool pays for the first
// indexing. It checks that the source shows what was seeded.
func seedCorpus(ctx context.Context, src *dovecottest.Server, plans []mailboxPlan, rng *rand.Rand, seed uint64) (*Corpus, error) {
	start := time.Now()
	c := &Corpus{Mailboxes: len(plans), Seed: seed}
	var sizes []int64
	for _, p := range plans {
		var mbMsgs int
		var mbBytes int64
		for _, f := range p.folders {
			c.Folders++
			var chunk []dovecottest.Message
			var chunkBytes int
			flush := func() error {
				err := src.Seed(p.user, f.name, chunk)
				chunk, chunkBytes = nil, 0
				return err
			}
			for _, size := range f.sizes {
				m := dovecottest.Message{Flags: mailgen.Flags(rng, f.name), Date: mailgen.Date(rng)}
				m.Body = generateMessage(rng, p.user, size, m.Date, seed, c.Messages)
				c.Messages++
				c.Bytes += int64(len(m.Body))
				mbMsgs++
				mbBytes += int64(len(m.Body))
				sizes = append(sizes, int64(len(m.Body)))
				chunk = append(chunk, m)
				chunkBytes += len(m.Body)
				if chunkBytes >= seedChunk {
					if err := flush(); err != nil {
						return nil, fmt.Errorf("seed source: %w", err)
					}
				}
			}
			// Also creates folders that stay empty.
			if len(chunk) > 0 || len(f.sizes) == 0 {
				if err := flush(); err != nil {
					return nil, fmt.Errorf("seed source: %w", err)
				}
			}
			if err := src.Subscribe(p.user, f.name); err != nil {
				return nil, fmt.Errorf("seed source: %w", err)
			}
		}
		n, b, err := mailboxTotals(ctx, src, p.user)
		if err != nil {
			return nil, fmt.Errorf("seed source: index %s: %w", p.user, err)
		}
		if n != mbMsgs || b != mbBytes {
			return nil, fmt.Errorf("seed source: %s shows %d messages (%d bytes), seeded %d (%d bytes)", p.user, n, b, mbMsgs, mbBytes)
		}
	}
	slices.Sort(sizes)
	if len(sizes) > 0 {
		c.Largest = sizes[len(sizes)-1]
		c.Median = sizes[len(sizes)/2]
	}
	for _, s := range sizes {
		if s > 1_000_000 {
			c.Over1MB++
		}
	}
	c.Seconds = time.Since(start).Seconds()
	return c, nil
}

// mailboxTotals asks Dovecot for the number of messages and their total
// size (CRLF lines, as IMAP serves them) over every folder of user. The
// first call for a mailbox builds its indexes.
func mailboxTotals(ctx context.Context, s *dovecottest.Server, user string) (int, int64, error) {
	out, err := s.Doveadm(ctx, "-f", "tab", "mailbox", "status", "-u", user, "-t", "messages vsize", "*")
	if err != nil {
		return 0, 0, err
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != 2 {
		return 0, 0, fmt.Errorf("doveadm mailbox status: unexpected output %q", out)
	}
	head, vals := strings.Split(lines[0], "\t"), strings.Split(lines[1], "\t")
	var n int
	var b int64
	for i, h := range head {
		if i >= len(vals) {
			break
		}
		v, err := strconv.ParseInt(strings.TrimSpace(vals[i]), 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("doveadm mailbox status: %s %q: %w", h, vals[i], err)
		}
		switch strings.TrimSpace(h) {
		case "messages":
			n = int(v)
		case "vsize":
			b = v
		}
	}
	return n, b, nil
}

// generateMessage makes message n of the corpus of seed, for user, of
// about size bytes.
func generateMessage(rng *rand.Rand, user string, size int64, date time.Time, seed uint64, n int) []byte {
	return mailgen.Message(rng, mailgen.Spec{To: user, Size: size, Date: date,
		ID: fmt.Sprintf("%d.%d", seed, n), Attachment: fmt.Sprintf("document-%d.pdf", n)})
}
