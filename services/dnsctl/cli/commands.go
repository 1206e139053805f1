package cli

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/mailferry/mailferry/services/dnsctl"
	"github.com/mailferry/mailferry/services/dnsctl/dnsconfig"
	"github.com/mailferry/mailferry/shared/command"
	"github.com/mailferry/mailferry/shared/event"
)

func runPlan(ctx context.Context, o *options, stdout, stderr io.Writer) error {
	s, err := open(ctx, o, stderr)
	if err != nil {
		return err
	}
	defer s.close()
	domains, err := s.domains(o)
	if err != nil {
		return err
	}
	p, err := s.eng.Plan(ctx, domains, true)
	if err != nil {
		return err
	}
	if o.json {
		return writeJSON(stdout, p)
	}
	writePlan(stdout, p)
	return nil
}

func runApply(ctx context.Context, o *options, stdout, stderr io.Writer) error {
	return runReport(ctx, o, stdout, stderr, func(s *session, domains []string) (*dnsctl.Report, error) {
		return s.eng.Apply(ctx, domains, dnsctl.ApplyOptions{DryRun: o.dryRun, Force: o.force, Replan: o.replan, Verify: !o.noVerify})
	})
}

func runVerify(ctx context.Context, o *options, stdout, stderr io.Writer) error {
	return runReport(ctx, o, stdout, stderr, func(s *session, domains []string) (*dnsctl.Report, error) {
		return s.eng.Verify(ctx, domains)
	})
}

func runLowerTTL(ctx context.Context, o *options, stdout, stderr io.Writer) error {
	if o.ttl == 0 || o.ttl > 1<<31-1 {
		return command.Usagef("-ttl %d: want 1 to 2147483647 seconds", o.ttl)
	}
	return runReport(ctx, o, stdout, stderr, func(s *session, domains []string) (*dnsctl.Report, error) {
		return s.eng.LowerTTL(ctx, domains, uint32(o.ttl), dnsctl.ApplyOptions{DryRun: o.dryRun, Force: o.force})
	})
}

func runRestoreTTL(ctx context.Context, o *options, stdout, stderr io.Writer) error {
	if o.ttl > dnsconfig.MaxTTL {
		return command.Usagef("-ttl %d: want 1 to %d seconds", o.ttl, dnsconfig.MaxTTL)
	}
	s, err := open(ctx, o, stderr)
	if err != nil {
		return err
	}
	defer s.close()
	domains, err := s.domains(o)
	if err != nil {
		return err
	}
	r, err := s.eng.RestoreTTLs(ctx, domains, uint32(o.ttl), dnsctl.ApplyOptions{DryRun: o.dryRun, Force: o.force})
	if err != nil {
		return err
	}
	if err := finish(stdout, r, o.json); err != nil {
		return err
	}
	if n := r.Totals[string(dnsctl.Refused)]; n > 0 {
		return fmt.Errorf("%d of %d domains refused (not switched; -force sets the TTL anyway): %w", n, len(r.Results), ErrFailures)
	}
	return nil
}

func runRollback(ctx context.Context, o *options, stdout, stderr io.Writer) error {
	if o.all == (o.domains != "") {
		return command.Usagef("pass either -domain D or -all")
	}
	s, err := open(ctx, o, stderr)
	if err != nil {
		return err
	}
	defer s.close()
	var domains []string
	if !o.all {
		if domains, err = s.domains(o); err != nil {
			return err
		}
	}
	r, err := s.eng.Rollback(ctx, domains, o.dryRun)
	if err != nil {
		return err
	}
	return finish(stdout, r, o.json)
}

// runReport runs a command that reports per domain over the selected
// domains.
func runReport(ctx context.Context, o *options, stdout, stderr io.Writer, f func(*session, []string) (*dnsctl.Report, error)) error {
	s, err := open(ctx, o, stderr)
	if err != nil {
		return err
	}
	defer s.close()
	domains, err := s.domains(o)
	if err != nil {
		return err
	}
	r, err := f(s, domains)
	if err != nil {
		return err
	}
	return finish(stdout, r, o.json)
}

func finish(w io.Writer, r *dnsctl.Report, asJSON bool) error {
	if asJSON {
		if err := writeJSON(w, r); err != nil {
			return err
		}
	} else {
		writeReport(w, r)
	}
	if n := r.Failures(); n > 0 {
		return fmt.Errorf("%d of %d domains: %w", n, len(r.Results), ErrFailures)
	}
	return nil
}

func runStatus(ctx context.Context, o *options, stdout, stderr io.Writer) error {
	s, err := open(ctx, o, stderr)
	if err != nil {
		return err
	}
	defer s.close()
	var domains []string
	if o.domains != "" {
		if domains, err = s.domains(o); err != nil {
			return err
		}
	}
	entries, err := s.eng.Status(ctx, domains)
	if err != nil {
		return err
	}
	if o.json {
		return writeJSON(stdout, entries)
	}
	writeStatus(stdout, entries)
	return nil
}

func runCutover(ctx context.Context, o *options, stdout, stderr io.Writer) error {
	if o.domains == "" {
		return command.Usagef("pass -domain D")
	}
	s, err := open(ctx, o, stderr)
	if err != nil {
		return err
	}
	defer s.close()
	pub := event.Publisher{JS: s.broker.JS, Service: dnsctl.ServiceName}
	for _, d := range strings.Split(o.domains, ",") {
		if err := dnsctl.RequestCutover(ctx, pub, strings.TrimSpace(d)); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "cutover of %s requested\n", strings.TrimSpace(d))
	}
	return nil
}
