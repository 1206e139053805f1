package chaos

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/mailferry/mailferry/cmd/mailferry/status"
	"github.com/mailferry/mailferry/shared/broker"
	"github.com/mailferry/mailferry/shared/config"
	"github.com/mailferry/mailferry/shared/job"
)

// maxJobsRead bounds how many job records diagnose reads.
const maxJobsRead = 20000

// diagnose starts the nats process on the store the hung migrate used and
// writes what the broker holds — streams, the jobs consumers, the jobs by
// pass and mailbox, the loader's leases, each mailbox's status — to
// final-state.txt, whose path it returns.
func (e *env) diagnose(ctx context.Context) string {
	path := filepath.Join(e.o.Work, "final-state.txt")
	var b strings.Builder
	defer func() { _ = os.WriteFile(path, []byte(b.String()), 0o644) }()
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if err := e.nats.start(); err != nil {
		fmt.Fprintf(&b, "start nats: %v\n", err)
		return path
	}
	defer e.nats.stop(ctx)
	if err := e.waitNATS(ctx); err != nil {
		fmt.Fprintf(&b, "%v\n", err)
		return path
	}
	cfg, err := config.Load(e.svcConf)
	if err != nil {
		fmt.Fprintf(&b, "%v\n", err)
		return path
	}
	br, err := broker.Open(ctx, cfg.NATS, "chaos-diagnose", zerolog.Nop())
	if err != nil {
		fmt.Fprintf(&b, "open broker: %v\n", err)
		return path
	}
	defer br.Close()
	fmt.Fprintf(&b, "broker state after the final migrate hung (%s)\n\n", time.Now().UTC().Format(time.RFC3339))
	for _, name := range []string{broker.StreamJobs, broker.StreamMail, broker.StreamEvents, broker.StreamDead} {
		st, err := br.JS.Stream(ctx, name)
		if err != nil {
			fmt.Fprintf(&b, "stream %s: %v\n", name, err)
			continue
		}
		info, err := st.Info(ctx)
		if err != nil {
			fmt.Fprintf(&b, "stream %s: %v\n", name, err)
			continue
		}
		s := info.State
		fmt.Fprintf(&b, "stream %-10s msgs %d bytes %d seq %d..%d consumers %d\n", name, s.Msgs, s.Bytes, s.FirstSeq, s.LastSeq, s.Consumers)
	}
	b.WriteString("\n")
	if st, err := br.JS.Stream(ctx, broker.StreamJobs); err == nil {
		diagnoseConsumers(ctx, &b, st)
		diagnoseJobs(ctx, &b, st)
	}
	diagnoseLeases(ctx, &b, br.Ledger)
	if s, err := status.Read(ctx, br, e.boxes); err != nil {
		fmt.Fprintf(&b, "status: %v\n", err)
	} else {
		b.WriteString("status:\n")
		s.WriteText(&b)
	}
	return path
}

func diagnoseConsumers(ctx context.Context, b *strings.Builder, st jetstream.Stream) {
	l := st.ListConsumers(ctx)
	for ci := range l.Info() {
		fmt.Fprintf(b, "consumer %-12s pending %d ack-pending %d redelivered %d waiting %d delivered-seq %d ack-floor %d ack-wait %s max-deliver %d\n",
			ci.Name, ci.NumPending, ci.NumAckPending, ci.NumRedelivered, ci.NumWaiting,
			ci.Delivered.Stream, ci.AckFloor.Stream, ci.Config.AckWait, ci.Config.MaxDeliver)
	}
	if err := l.Err(); err != nil {
		fmt.Fprintf(b, "consumers: %v\n", err)
	}
	b.WriteString("\n")
}

// diagnoseJobs counts the jobs kept per mailbox and lists the passes.
func diagnoseJobs(ctx context.Context, b *strings.Builder, st jetstream.Stream) {
	info, err := st.Info(ctx)
	if err != nil || info.State.Msgs == 0 {
		return
	}
	perBox := map[string]int{}
	var passes []string
	seen := map[string]bool{}
	first, last := info.State.FirstSeq, info.State.LastSeq
	if last-first >= maxJobsRead {
		first = last - maxJobsRead + 1
	}
	for seq := first; seq <= last && ctx.Err() == nil; seq++ {
		m, err := st.GetMsg(ctx, seq)
		if err != nil {
			continue
		}
		var j job.Job
		if json.Unmarshal(m.Data, &j) != nil {
			continue
		}
		perBox[j.SourceUser]++
		if !seen[j.Pass] {
			seen[j.Pass] = true
			passes = append(passes, j.Pass)
		}
	}
	var boxes []string
	for k := range perBox {
		boxes = append(boxes, k)
	}
	sort.Strings(boxes)
	fmt.Fprintf(b, "jobs %d..%d: %d passes (oldest first: %s)\n", first, last, len(passes), strings.Join(passes, " "))
	for _, k := range boxes {
		fmt.Fprintf(b, "  %-28s %d jobs\n", k, perBox[k])
	}
	b.WriteString("\n")
}

func diagnoseLeases(ctx context.Context, b *strings.Builder, kv jetstream.KeyValue) {
	l, err := kv.ListKeysFiltered(ctx, "lease.>")
	if err != nil {
		fmt.Fprintf(b, "leases: %v\n", err)
		return
	}
	for k := range l.Keys() {
		if v, err := kv.Get(ctx, k); err == nil {
			fmt.Fprintf(b, "%s = %s (rev %d, written %s)\n", k, v.Value(), v.Revision(), v.Created().UTC().Format(time.RFC3339Nano))
		}
	}
	_ = l.Stop()
	b.WriteString("\n")
}

// Condense shortens a goroutine dump to the goroutines that run
// mailferry's own code, each as its header and mailferry's frames
// (function and file:line), at most max bytes.
func Condense(dump string, max int) string {
	var out strings.Builder
	n := 0
	for _, g := range strings.Split(dump, "\n\n") {
		lines := strings.Split(strings.TrimSpace(g), "\n")
		if len(lines) == 0 || !strings.HasPrefix(lines[0], "goroutine ") {
			continue
		}
		var frames []string
		for i := 1; i+1 < len(lines); i++ {
			fn := lines[i]
			if strings.HasPrefix(fn, "\t") || !strings.Contains(fn, "github.com/mailferry/mailferry/") {
				continue
			}
			if j := strings.LastIndex(fn, "("); j > 0 {
				fn = fn[:j]
			}
			file := strings.TrimSpace(lines[i+1])
			if j := strings.Index(file, " +0x"); j > 0 {
				file = file[:j]
			}
			for _, dir := range []string{"/cmd/mailferry/", "/services/", "/shared/"} {
				if j := strings.Index(file, dir); j >= 0 {
					file = file[j+1:]
					break
				}
			}
			frames = append(frames, "    "+strings.ReplaceAll(fn, "github.com/mailferry/mailferry/", "")+"  "+file)
		}
		if len(frames) == 0 {
			continue
		}
		n++
		head := lines[0]
		if j := strings.Index(head, " gp="); j > 0 {
			if k := strings.Index(head, " ["); k > j {
				head = head[:j] + head[k:]
			}
		}
		out.WriteString(head + "\n" + strings.Join(frames, "\n") + "\n")
	}
	s := fmt.Sprintf("%d goroutines in mailferry's code:\n%s", n, out.String())
	if len(s) > max {
		s = s[:max] + "\n…"
	}
	return s
}
