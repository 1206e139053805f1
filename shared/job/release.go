package job

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/mailferry/mailferry/shared/broker"
)

// Consumers are the durable consumers of the jobs stream: the
// extractor's and the loader's.
var Consumers = []string{"extractor", "loader"}

// ReleaseDeliveries hands the jobs a killed process held (delivered to
// it, not acknowledged) out again at once instead of after job_ack_wait:
// it resets each consumer of the jobs stream to its acknowledgement floor,
// so every job after it is delivered again (one finished meanwhile ends at
// once: passes are exactly-once). Only for a broker no other process can
// reach (broker.Private), whose deliveries can only belong to the dead;
// elsewhere a live worker holds them.
func ReleaseDeliveries(ctx context.Context, js jetstream.JetStream, log zerolog.Logger) error {
	for _, durable := range Consumers {
		c, err := js.Consumer(ctx, broker.StreamJobs, durable)
		if errors.Is(err, jetstream.ErrConsumerNotFound) || errors.Is(err, jetstream.ErrStreamNotFound) {
			continue
		}
		if err != nil {
			return fmt.Errorf("jobs consumer %s: %w", durable, err)
		}
		info, err := c.Info(ctx)
		if err != nil {
			return fmt.Errorf("jobs consumer %s: %w", durable, err)
		}
		if info.NumAckPending == 0 {
			continue
		}
		if _, err := js.ResetConsumer(ctx, broker.StreamJobs, durable); err != nil {
			return fmt.Errorf("release the jobs of consumer %s: %w", durable, err)
		}
		log.Info().Str("consumer", durable).Int("jobs", info.NumAckPending).Msg("jobs a killed run held handed out again")
	}
	return nil
}
