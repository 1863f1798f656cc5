package paid

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/floodgate-p2p/floodgate/internal/broker"
	"github.com/floodgate-p2p/floodgate/internal/identity"
	"github.com/floodgate-p2p/floodgate/internal/ledger"
)

// BrokerOver gives a Session the broker calls it needs (Broker and
// Complainer) over a broker client.
func BrokerOver(c *broker.Client) Broker { return brokerClient{c} }

type brokerClient struct{ c *broker.Client }

func (b brokerClient) Open(ctx context.Context, idemKey, payee string, root identity.Digest, length, unit int64, expiry time.Time) (identity.Voucher, error) {
	resp, err := b.c.OpenChannel(ctx, idemKey, broker.OpenRequest{Payee: payee, Root: root, Length: length, Unit: unit, Expiry: expiry})
	if errors.Is(err, ledger.ErrInsufficientFunds) {
		return identity.Voucher{}, fmt.Errorf("%w: %w", ErrInsufficientFunds, err)
	}
	if err != nil {
		return identity.Voucher{}, err
	}
	return resp.Voucher, nil
}

func (b brokerClient) Redeem(ctx context.Context, rs []Redemption) ([]RedemptionResult, error) {
	req := make([]broker.Redemption, len(rs))
	for i, r := range rs {
		req[i] = broker.Redemption{Channel: r.Channel, Index: r.Index, Preimage: r.Preimage, Close: r.Close}
	}
	got, err := b.c.Redemptions(ctx, req)
	out := make([]RedemptionResult, len(got))
	for i, g := range got {
		out[i] = RedemptionResult{Paid: g.Paid, Redeemed: g.Redeemed, Closed: g.Closed}
		if g.Error != nil {
			out[i].Err = g.Error
		}
	}
	return out, err
}

func (b brokerClient) Channel(ctx context.Context, id string) (ChannelState, error) {
	resp, err := b.c.Channel(ctx, id)
	if err != nil {
		return ChannelState{}, err
	}
	c := resp.Channel
	return ChannelState{Payer: c.Payer, Payee: c.Payee, Redeemed: c.Redeemed, Closed: c.State == ledger.StateClosed}, nil
}

func (b brokerClient) Complain(ctx context.Context, c Complaint) error {
	req := broker.ComplaintRequest{Account: c.Account, InfoHash: c.InfoHash.String(), Owed: c.Owed, Paid: c.Paid, Reason: broker.ReasonUnpaid}
	for id, idx := range c.Channels {
		req.Channels = append(req.Channels, broker.ChannelClaim{Channel: id, Index: idx})
	}
	return b.c.Complain(ctx, broker.NewIdempotencyKey(), req)
}
