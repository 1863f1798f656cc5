package node

import (
	"context"
	"errors"
	"fmt"
	"net/netip"

	"github.com/floodgate-p2p/floodgate/internal/broker"
	"github.com/floodgate-p2p/floodgate/internal/identity"
	"github.com/floodgate-p2p/floodgate/internal/paid"
	"github.com/floodgate-p2p/floodgate/internal/terms"
)

// ErrNoIdentity is returned for a paid torrent when the peer has no key.
var ErrNoIdentity = errors.New("this is a paid Floodgate torrent and needs an identity key (floodgate account new, then floodgate account register)")

// Broker returns a client for the terms' broker acting as key.
func Broker(tm *terms.Terms, key *identity.PrivateKey) (*broker.Client, error) {
	provider := tm.Provider
	return broker.NewClient(broker.ClientConfig{BaseURL: tm.Broker, Key: key, ProviderKey: &provider})
}

// startPayments sets up the Floodgate extension for a paid torrent:
// identity, certificate (registering with the broker if needed) and the
// payment session.
func startPayments(ctx context.Context, cfg Config, tm *terms.Terms) (*paid.Session, *broker.Client, error) {
	if cfg.Identity == nil {
		return nil, nil, ErrNoIdentity
	}
	if cfg.TrustedProvider != nil && *cfg.TrustedProvider != tm.Provider {
		return nil, nil, fmt.Errorf("torrent is signed by provider %s, not the provider %s this peer trusts", tm.Provider, *cfg.TrustedProvider)
	}
	class, err := tm.Class(cfg.Class)
	if err != nil {
		return nil, nil, err
	}
	bc, err := Broker(tm, cfg.Identity)
	if err != nil {
		return nil, nil, err
	}
	var cert identity.Certificate
	if cfg.Certificate != nil {
		cert = *cfg.Certificate
	} else {
		reg, err := bc.Register(ctx)
		if err != nil {
			return nil, nil, fmt.Errorf("register with broker %s: %w", tm.Broker, err)
		}
		cert = reg.Certificate
	}
	logger := cfg.Logger
	sess, err := paid.NewSession(paid.Config{
		Torrent:   cfg.Torrent,
		Terms:     tm,
		Key:       cfg.Identity,
		Cert:      cert,
		Class:     class,
		Broker:    paid.BrokerOver(bc),
		Free:      cfg.Free,
		Credit:    cfg.Credit,
		MaxSpend:  cfg.MaxSpend,
		OpenGate:  cfg.OpenGate,
		Balance:   cfg.Balance,
		StatePath: cfg.StatePath,
		Logger:    logger,
		ExternalIPs: func() []netip.Addr {
			if ip, ok := cfg.externalIP.Load().(netip.Addr); ok && ip.IsValid() {
				return []netip.Addr{ip}
			}
			return nil
		},
	})
	if err != nil {
		return nil, nil, err
	}
	return sess, bc, nil
}
