package node

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/floodgate-p2p/floodgate/internal/broker"
	"github.com/floodgate-p2p/floodgate/internal/identity"
	"github.com/floodgate-p2p/floodgate/internal/ledger"
	"github.com/floodgate-p2p/floodgate/internal/paid"
	"github.com/floodgate-p2p/floodgate/internal/terms"
)

// ErrNoIdentity is returned for a paid torrent when the peer has no key.
var ErrNoIdentity = errors.New("this is a paid Floodgate torrent and needs an identity key (floodgate account new, then floodgate account register)")

// brokerAdapter gives a paid.Session the broker calls it needs.
type brokerAdapter struct{ c *broker.Client }

func (b brokerAdapter) Open(ctx context.Context, idemKey, payee string, root identity.Digest, length, unit int64, expiry time.Time) (identity.Voucher, error) {
	resp, err := b.c.OpenChannel(ctx, idemKey, broker.OpenRequest{Payee: payee, Root: root, Length: length, Unit: unit, Expiry: expiry})
	if errors.Is(err, ledger.ErrInsufficientFunds) {
		return identity.Voucher{}, fmt.Errorf("%w: %w", paid.ErrInsufficientFunds, err)
	}
	if err != nil {
		return identity.Voucher{}, err
	}
	return resp.Voucher, nil
}

func (b brokerAdapter) Redeem(ctx context.Context, rs []paid.Redemption) ([]paid.RedemptionResult, error) {
	req := make([]broker.Redemption, len(rs))
	for i, r := range rs {
		req[i] = broker.Redemption{Channel: r.Channel, Index: r.Index, Preimage: r.Preimage, Close: r.Close}
	}
	got, err := b.c.Redemptions(ctx, req)
	out := make([]paid.RedemptionResult, len(got))
	for i, g := range got {
		out[i] = paid.RedemptionResult{Paid: g.Paid, Redeemed: g.Redeemed, Closed: g.Closed}
		if g.Error != nil {
			out[i].Err = g.Error
		}
	}
	return out, err
}

func (b brokerAdapter) Complain(ctx context.Context, c paid.Complaint) error {
	req := broker.ComplaintRequest{Account: c.Account, InfoHash: c.InfoHash.String(), Owed: c.Owed, Paid: c.Paid, Reason: broker.ReasonUnpaid}
	for id, idx := range c.Channels {
		req.Channels = append(req.Channels, broker.ChannelClaim{Channel: id, Index: idx})
	}
	return b.c.Complain(ctx, broker.NewIdempotencyKey(), req)
}

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
		Broker:    brokerAdapter{bc},
		Free:      cfg.Free,
		Credit:    cfg.Credit,
		MaxSpend:  cfg.MaxSpend,
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
