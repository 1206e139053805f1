package bench

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"mime"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

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
	// bigEvery adds one message of several MB (max-size/8..max-size/2)
	// per bigEvery messages, at least one.
	bigEvery = 2500
	// seedChunk bounds the bytes generated before they are written to the
	// source, so the benchmark's own memory stays small.
	seedChunk = 16 << 20
)

// specialFolders exist in every mailbox; they are special-use on both
// servers. Some stay empty.
var specialFolders = []string{"INBOX", "Sent", "Drafts", "Trash", "Junk", "Archive"}

// extraFolders are drawn per mailbox: nested, non-ASCII, with spaces and
// with '&' (escaped in modified UTF-7). None contains '.', the target's
// separator, so every tool can reproduce every name.
var extraFolders = []string{
	"Archive/2019", "Archive/2019/Q1", "Archive/2020", "Archive/2021/Projekte",
	"Entwürfe", "Projekte/Überblick", "日本語/メール", "Kunden/Müller & Söhne",
	"Newsletter", "Receipts 2023", "Lists/golang-nuts", "Reisen/Zürich",
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

var keywords = []string{"$Forwarded", "$Label1", "$MDNSent", "Work", "NonJunk"}

var words = strings.Fields(`the of and to in is that for it with as was on be by this are from or
have an they which one you had not but what all were when we there can more if out so said
use each she do how their time will up other about many then them these some her would make
like him into has look two more write go see number no way could people my than first water
been call who oil its now find long down day did get come made may part Angebot Rechnung
Grüße Bestellung Lieferung Übersicht Straße Größe naïve café résumé 会議 資料 よろしく
quarterly report invoice meeting agenda budget project release deadline review draft`)

var names = []string{"Anna Schmidt", "Bob Miller", "Chloé Dubois", "Dmitri Ivanov", "Eva Müller",
	"Frank Weber", "Grace Hopper", "Hiro Tanaka", "Ingrid Berg", "Jamal Khan"}

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
func SeedCorpus(ctx context.Context, src *dovecottest.Server, users []string, messages int, maxSize int64, seed uint64) (*Corpus, error) {
	rng := newRand(seed)
	return seedCorpus(ctx, src, planCorpus(users, messages, maxSize, rng), rng, seed)
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
func newRand(seed uint64) *rand.Rand {
	return rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
}

// planCorpus decides mailboxes, folders and message sizes. It draws from
// rng in a fixed order, so a seed always gives the same corpus.
func planCorpus(users []string, messages int, maxSize int64, rng *rand.Rand) []mailboxPlan {
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
		names := slices.Clone(specialFolders)
		k := 2 + rng.IntN(5)
		for _, j := range rng.Perm(len(extraFolders))[:k] {
			names = append(names, extraFolders[j])
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
	// The long tail for sure: one message just below max-size and a few
	// of several MB, at random places.
	big := 1 + max(1, messages/bigEvery)
	perm := rng.Perm(len(all))
	for n, idx := range perm[:min(big, len(perm))] {
		p := all[idx]
		size := maxSize - rng.Int64N(maxSize/100+1)
		if n > 0 {
			size = maxSize/8 + rng.Int64N(maxSize/2-maxSize/8+1)
		}
		plans[p.mb].folders[p.f].sizes[p.i] = max(size, minSize)
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
	s := int64(math.Exp(math.Log(medianSize) + sizeSigma*rng.NormFloat64()))
	return min(max(s, minSize), maxSize)
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
				m := dovecottest.Message{Flags: randomFlags(rng, f.name), Date: randomDate(rng)}
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

func randomFlags(rng *rand.Rand, folder string) []string {
	var out []string
	if rng.IntN(10) < 7 {
		out = append(out, `\Seen`)
	}
	if rng.IntN(100) < 15 {
		out = append(out, `\Answered`)
	}
	if rng.IntN(100) < 8 {
		out = append(out, `\Flagged`)
	}
	if folder == "Drafts" || rng.IntN(100) < 1 {
		out = append(out, `\Draft`)
	}
	if rng.IntN(100) < 1 {
		out = append(out, `\Deleted`)
	}
	if rng.IntN(5) == 0 {
		out = append(out, keywords[rng.IntN(len(keywords))])
	}
	return out
}

// randomDate is a whole second between 2005 and 2025.
func randomDate(rng *rand.Rand) time.Time {
	return time.Unix(1104537600+rng.Int64N(631_152_000), 0)
}

var zones = []*time.Location{time.UTC, time.FixedZone("", 3600), time.FixedZone("", 7200), time.FixedZone("", -5*3600), time.FixedZone("", 9*3600)}

// generateMessage returns an RFC 5322 message of about size bytes with
// CRLF line endings only: plain text when small, otherwise text plus a
// base64 attachment of random bytes.
func generateMessage(rng *rand.Rand, user string, size int64, date time.Time, seed uint64, n int) []byte {
	var b bytes.Buffer
	b.Grow(int(size) + 256)
	from := names[rng.IntN(len(names))]
	fromAddr := strings.ToLower(strings.Fields(from)[1]) + "@partner.example"
	zone := zones[rng.IntN(len(zones))]
	subject := sentence(rng, 3+rng.IntN(6))
	crlf := func(format string, args ...any) {
		fmt.Fprintf(&b, format, args...)
		b.WriteString("\r\n")
	}
	crlf("Return-Path: <%s>", fromAddr)
	crlf("Received: from mx.partner.example (mx.partner.example [192.0.2.%d])", 1+rng.IntN(254))
	crlf("\tby imap.old.example with ESMTPS id %016x", rng.Uint64())
	crlf("\tfor <%s>; %s", user, date.In(zone).Format(time.RFC1123Z))
	crlf("From: %s <%s>", mime.QEncoding.Encode("utf-8", from), fromAddr)
	crlf("To: <%s>", user)
	crlf("Subject: %s", mime.QEncoding.Encode("utf-8", subject))
	crlf("Date: %s", date.In(zone).Format(time.RFC1123Z))
	crlf("Message-ID: <%d.%d.%016x@old.example>", seed, n, rng.Uint64())
	crlf("MIME-Version: 1.0")
	if size < 48<<10 {
		crlf("Content-Type: text/plain; charset=utf-8")
		crlf("Content-Transfer-Encoding: 8bit")
		crlf("")
		writeText(&b, rng, int(size))
		return b.Bytes()
	}
	boundary := fmt.Sprintf("=_%016x", rng.Uint64())
	crlf("Content-Type: multipart/mixed; boundary=\"%s\"", boundary)
	crlf("")
	crlf("This is a multi-part message in MIME format.")
	crlf("")
	crlf("--%s", boundary)
	crlf("Content-Type: text/plain; charset=utf-8")
	crlf("Content-Transfer-Encoding: 8bit")
	crlf("")
	writeText(&b, rng, b.Len()+300+rng.IntN(3000))
	crlf("")
	crlf("--%s", boundary)
	name := fmt.Sprintf("document-%d.pdf", n)
	crlf("Content-Type: application/pdf; name=\"%s\"", name)
	crlf("Content-Disposition: attachment; filename=\"%s\"", name)
	crlf("Content-Transfer-Encoding: base64")
	crlf("")
	closing := len(boundary) + 8
	var raw [57]byte
	line := make([]byte, base64.StdEncoding.EncodedLen(len(raw)))
	for int64(b.Len()+closing) < size {
		for i := 0; i < len(raw); i += 8 {
			var w [8]byte
			binary.LittleEndian.PutUint64(w[:], rng.Uint64())
			copy(raw[i:], w[:])
		}
		base64.StdEncoding.Encode(line, raw[:])
		b.Write(line)
		b.WriteString("\r\n")
	}
	crlf("")
	crlf("--%s--", boundary)
	return b.Bytes()
}

// writeText appends lines of words (at most 76 bytes, CRLF) until b holds
// about until bytes.
func writeText(b *bytes.Buffer, rng *rand.Rand, until int) {
	for b.Len() < until {
		n := 0
		for n < 60 {
			w := words[rng.IntN(len(words))]
			if n > 0 {
				b.WriteByte(' ')
				n++
			}
			b.WriteString(w)
			n += len(w)
		}
		b.WriteString("\r\n")
	}
}

func sentence(rng *rand.Rand, n int) string {
	ws := make([]string, n)
	for i := range ws {
		ws[i] = words[rng.IntN(len(words))]
	}
	s := strings.Join(ws, " ")
	r, n0 := utf8.DecodeRuneInString(s)
	return string(unicode.ToUpper(r)) + s[n0:]
}
