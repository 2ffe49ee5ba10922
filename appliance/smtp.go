package appliance

import (
	"context"

	"concierge/appliance/config"
)

type smtpService struct{ env *Env }

func newSMTPService(env *Env) Service { return &smtpService{env: env} }

func (s *smtpService) Name() string                                        { return "smtp" }
func (s *smtpService) Start(ctx context.Context, cfg *config.Config) error { return nil }
func (s *smtpService) Reconfigure(cfg *config.Config) error                { return nil }
func (s *smtpService) Stop(ctx context.Context) error                      { return nil }
func (s *smtpService) Listening() []string                                 { return nil }
