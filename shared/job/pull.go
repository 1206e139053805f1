package job

import (
	"context"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

// fetchWait bounds one fetch's wait for a message.
const fetchWait = 500 * time.Millisecond

// Pull hands the messages of cons to handle, at most concurrency at once,
// until ctx ends, and waits for the handlers it started. A fetch error is
// logged and retried after a pause; handle acknowledges its message.
func Pull(ctx context.Context, cons jetstream.Consumer, concurrency int, log zerolog.Logger, handle func(jetstream.Msg)) {
	slots := make(chan struct{}, max(concurrency, 1))
	var unanswered fetchFailures
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		select {
		case <-ctx.Done():
			return
		case slots <- struct{}{}:
		}
		// A fetch cannot be interrupted: its wait is what a shutdown
		// waits at most (and what an idle worker asks twice a second).
		batch, err := cons.Fetch(1, jetstream.FetchMaxWait(fetchWait))
		if err != nil {
			<-slots
			if ctx.Err() != nil {
				return
			}
			log.Warn().Err(err).Msg("fetch from consumer")
			sleep(ctx, time.Second)
			continue
		}
		got := false
		for m := range batch.Messages() {
			got = true
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() { <-slots }()
				handle(m)
			}()
		}
		if !got {
			<-slots
		}
		unanswered.note(batch.Error(), log)
	}
}

// fetchFailures says once at warn that the consumer's fetches fail (no
// leader for it during an election: "no responders"; a consumer deleted),
// and once at info when they succeed again: a fetch that ends with an
// error otherwise looks like one that found no job.
type fetchFailures struct {
	since time.Time
}

func (f *fetchFailures) note(err error, log zerolog.Logger) {
	switch {
	case err != nil && f.since.IsZero():
		f.since = time.Now()
		log.Warn().Err(err).Msg("the jobs consumer does not answer fetches (a leader election?); asking again")
	case err == nil && !f.since.IsZero():
		log.Info().Dur("after", time.Since(f.since).Round(time.Millisecond)).Msg("the jobs consumer answers fetches again")
		f.since = time.Time{}
	}
}
