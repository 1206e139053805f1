package imapappend

import (
	"context"
	"fmt"
	"testing"

	"github.com/mailferry/mailferry/shared/testenv/dovecottest"
)

// BenchmarkAppend appends 1000 messages of 4 KiB per operation to Dovecot:
// as MULTIAPPEND batches, as pipelined APPENDs, and one message per call
// (what a request-response client does) as the baseline.
func BenchmarkAppend(b *testing.B) {
	const perOp = 1000
	srv := startDovecot(b, dovecottest.Options{})
	cfg := plainIMAP(srv.Addr)
	msgs := messagesOf(genMessages(perOp, 4096, "bench"))
	runs := 0
	for _, bc := range []struct {
		name     string
		useMulti bool
		batch    int
	}{
		{"multi/batch=100", true, 100},
		{"multi/batch=1000", true, 1000},
		{"pipelined/batch=100", false, 100},
		{"pipelined/batch=1000", false, 1000},
		{"one-per-call", false, 1},
	} {
		b.Run(bc.name, func(b *testing.B) {
			c := dialT(b, cfg, masterCred())
			// The function runs more than once per server (b.N ramps up):
			// each run gets a fresh mailbox.
			runs++
			mailbox := fmt.Sprintf("Bench-%t-%d-%d", bc.useMulti, bc.batch, runs)
			createMailbox(b, cfg, mailbox)
			b.SetBytes(perOp * 4096)
			for b.Loop() {
				for i := 0; i < perOp; i += bc.batch {
					if _, err := c.Append(context.Background(), mailbox, msgs[i:min(i+bc.batch, perOp)], bc.useMulti); err != nil {
						b.Fatalf("Append: %v", err)
					}
				}
			}
			b.ReportMetric(float64(b.N*perOp)/b.Elapsed().Seconds(), "msgs/s")
		})
	}
}
