package verify

import (
	"context"
	"fmt"

	"github.com/rs/zerolog"

	"github.com/mailferry/mailferry/services/auth/target/opensrs"
	"github.com/mailferry/mailferry/services/loader"
	"github.com/mailferry/mailferry/shared/broker"
	"github.com/mailferry/mailferry/shared/config"
)

// WithTargetTokens logs in to a target whose auth is token with the
// loader's login tokens: the token the loader stored for the mailbox, or
// one minted and stored as the loader would.
func WithTargetTokens(t *loader.Tokens) Option {
	return func(o *options) { o.tokens = t }
}

// TargetTokens is the option verifying needs when cfg's target.auth is
// token (nil otherwise): the loader's token bucket on b and a minter
// from target.opensrs.
func TargetTokens(ctx context.Context, cfg *config.Config, b *broker.Broker, log zerolog.Logger) (Option, error) {
	if cfg.Target.Auth != config.AuthToken {
		return nil, nil
	}
	minter, err := opensrs.NewMinter(cfg)
	if err != nil {
		return nil, err
	}
	if err := b.Use(ctx, broker.Needs{Writes: []string{broker.BucketTargetTokens}}); err != nil {
		return nil, err
	}
	kv, err := b.JS.KeyValue(ctx, broker.BucketTargetTokens)
	if err != nil {
		return nil, fmt.Errorf("bind bucket %s: %w", broker.BucketTargetTokens, err)
	}
	return WithTargetTokens(&loader.Tokens{Minter: minter, KV: kv, RenewBefore: cfg.Target.OpenSRS.RenewBefore.Std(), Log: log}), nil
}
