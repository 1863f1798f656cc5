package broker

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/floodgate-p2p/floodgate/internal/identity"
	"github.com/floodgate-p2p/floodgate/internal/ledger"
)

// The handlers. Each runs after authenticate, so c.key is proven and
// c.account is set when the route requires an account.

func (s *Server) register(ctx context.Context, c *call) (any, *Error) {
	if _, err := DecodeRegisterRequest(c.body); err != nil {
		return nil, badBody(err)
	}
	if c.isProvider {
		return nil, apiError(http.StatusForbidden, CodeForbidden, "the provider key cannot register as a customer")
	}
	acct := identity.AccountIDOf(c.key)
	if err := s.cfg.Ledger.CreateAccount(ctx, ledger.AccountID(acct), ledger.KindCustomer, c.key[:]); err != nil {
		return nil, s.ledgerError("create account", err)
	}
	s.accounts.Store(c.key, acct)
	cert, err := identity.IssueCertificate(s.cfg.ProviderKey, c.key, acct, c.now, c.now.Add(s.cfg.CertValidity))
	if err != nil {
		s.cfg.Logger.Error("broker: issuing certificate", "err", err)
		return nil, apiError(http.StatusInternalServerError, CodeInternal, "issuing certificate failed")
	}
	return RegisterResponse{Account: acct, Certificate: cert}, nil
}

func (s *Server) balance(ctx context.Context, c *call) (any, *Error) {
	id := c.r.PathValue("id")
	if err := checkAccountID("account", id); err != nil {
		return nil, badBody(err)
	}
	if id != c.account && !c.isProvider {
		return nil, apiError(http.StatusForbidden, CodeForbidden, "only the account's owner or the provider may read its balance")
	}
	bal, err := s.cfg.Ledger.Balance(ctx, ledger.AccountID(id))
	if err != nil {
		return nil, s.ledgerError("balance", err)
	}
	return BalanceResponse{Account: id, Balance: bal}, nil
}

func (s *Server) mint(ctx context.Context, c *call) (any, *Error) {
	req, err := DecodeMintRequest(c.body)
	if err != nil {
		return nil, badBody(err)
	}
	if err := s.cfg.Ledger.Mint(ctx, "mint:"+c.idemKey, ledger.AccountID(req.Account), req.Amount); err != nil {
		return nil, s.ledgerError("mint", err)
	}
	return MintResponse(req), nil
}

func (s *Server) open(ctx context.Context, c *call) (any, *Error) {
	req, err := DecodeOpenRequest(c.body)
	if err != nil {
		return nil, badBody(err)
	}
	if req.Payee == c.account {
		return nil, apiError(http.StatusBadRequest, CodeInvalid, "a channel cannot pay its own payer")
	}
	// Whole seconds, because the voucher carries whole seconds and must
	// state exactly the expiry the ledger enforces.
	expiry := time.Unix(req.Expiry.Unix(), 0).UTC()
	if d := expiry.Sub(c.now); d < s.cfg.MinChannelLifetime || d > s.cfg.MaxChannelLifetime {
		return nil, apiError(http.StatusBadRequest, CodeInvalid, "expiry must be between %v and %v from now", s.cfg.MinChannelLifetime, s.cfg.MaxChannelLifetime)
	}
	spec := ledger.Channel{
		Payer: ledger.AccountID(c.account), Payee: ledger.AccountID(req.Payee),
		Root: req.Root, Length: req.Length, Unit: req.Unit, Expiry: expiry,
	}
	// Idempotency keys are namespaced by payer, so one client's key can
	// never return another client's channel.
	ch, err := s.cfg.Ledger.OpenChannel(ctx, "open:"+c.account+":"+c.idemKey, spec, c.now)
	if err != nil {
		return nil, s.ledgerError("open channel", err)
	}
	if string(ch.Payer) != c.account {
		s.cfg.Logger.Error("broker: ledger returned another payer's channel", "channel", ch.ID)
		return nil, apiError(http.StatusInternalServerError, CodeInternal, "inconsistent channel")
	}
	// The payee redeems and closes it soon: neither needs to read it back.
	s.parties.put(ch.ID, string(ch.Payer), string(ch.Payee))
	return s.channelResponse(ch)
}

func (s *Server) channelResponse(ch ledger.Channel) (any, *Error) {
	v, err := identity.SignVoucher(s.cfg.ProviderKey, identity.Voucher{
		Channel: ch.ID, Payer: string(ch.Payer), Payee: string(ch.Payee), Root: ch.Root,
		Length: ch.Length, Unit: ch.Unit, Expiry: ch.Expiry,
	})
	if err != nil {
		s.cfg.Logger.Error("broker: signing voucher", "channel", ch.ID, "err", err)
		return nil, apiError(http.StatusInternalServerError, CodeInternal, "signing voucher failed")
	}
	return ChannelResponse{Channel: statusOf(ch), Voucher: v}, nil
}

// loadChannel reads a channel the caller is a party to (or any channel for
// the provider). Strangers get not_found rather than forbidden, so channel
// ids cannot be probed.
func (s *Server) loadChannel(ctx context.Context, c *call, id string) (ledger.Channel, *Error) {
	if err := checkAccountID("channel id", id); err != nil {
		return ledger.Channel{}, badBody(err)
	}
	ch, err := s.cfg.Ledger.Channel(ctx, id)
	if err != nil {
		return ledger.Channel{}, s.ledgerError("channel", err)
	}
	if !c.isProvider && string(ch.Payer) != c.account && string(ch.Payee) != c.account {
		return ledger.Channel{}, apiError(http.StatusNotFound, CodeNotFound, "no channel %q", id)
	}
	return ch, nil
}

func (s *Server) channel(ctx context.Context, c *call) (any, *Error) {
	ch, e := s.loadChannel(ctx, c, c.r.PathValue("id"))
	if e != nil {
		return nil, e
	}
	return s.channelResponse(ch)
}

func (s *Server) redeem(ctx context.Context, c *call) (any, *Error) {
	req, err := DecodeRedeemRequest(c.body)
	if err != nil {
		return nil, badBody(err)
	}
	return s.redeemChannel(ctx, c, c.r.PathValue("id"), req.Index, req.Preimage)
}

// redeemChannel redeems channel id up to index for its payee, the caller.
func (s *Server) redeemChannel(ctx context.Context, c *call, id string, index int64, preimage identity.Digest) (RedeemResponse, *Error) {
	redeemed, e := s.checkParty(ctx, c, id, true)
	if e != nil {
		return RedeemResponse{}, e
	}
	paid, err := s.cfg.Ledger.Redeem(ctx, id, index, preimage, c.now)
	if err != nil {
		return RedeemResponse{}, s.ledgerError("redeem", err)
	}
	s.metrics.paid.Add(float64(paid))
	// After success the channel stands at index or beyond; this is a
	// lower bound when redemptions race, which is all a payee needs.
	return RedeemResponse{Channel: id, Paid: paid, Redeemed: max(redeemed, index)}, nil
}

func (s *Server) close(ctx context.Context, c *call) (any, *Error) {
	if _, err := DecodeCloseRequest(c.body); err != nil {
		return nil, badBody(err)
	}
	return s.closeChannel(ctx, c, c.r.PathValue("id"))
}

// closeChannel closes channel id for the caller (its payee, or its payer
// once it expired: the ledger decides).
func (s *Server) closeChannel(ctx context.Context, c *call, id string) (CloseResponse, *Error) {
	// The ledger checks within its transaction who may close it and when.
	if _, e := s.checkParty(ctx, c, id, false); e != nil {
		return CloseResponse{}, e
	}
	refund, err := s.cfg.Ledger.Close(ctx, id, ledger.AccountID(c.account), c.now)
	if err != nil {
		return CloseResponse{}, s.ledgerError("close", err)
	}
	return CloseResponse{Channel: id, Refund: refund}, nil
}

// redemptions settles several channels of the caller's in one request and
// one ledger transaction: each is redeemed and then closed as asked, on
// its own, so one refused channel does not hold back the rest. Every
// channel beyond the first takes a token of the caller's rate limit, as
// its own request would.
func (s *Server) redemptions(ctx context.Context, c *call) (any, *Error) {
	req, err := DecodeRedemptionsRequest(c.body)
	if err != nil {
		return nil, badBody(err)
	}
	if n := len(req.Redemptions) - 1; n > 0 && !c.isProvider && !s.limiter.allowN(c.key, c.now, n) {
		return nil, apiError(http.StatusTooManyRequests, CodeRateLimited, "too many redemptions from this key; slow down")
	}
	resp := RedemptionsResponse{Results: make([]RedemptionResult, len(req.Redemptions))}
	items := make([]ledger.Settlement, 0, len(req.Redemptions))
	at := make([]int, 0, len(req.Redemptions)) // items[k] answers Results[at[k]]
	for i, r := range req.Redemptions {
		resp.Results[i].Channel = r.Channel
		if _, e := s.checkParty(ctx, c, r.Channel, r.Index > 0); e != nil {
			resp.Results[i].Error = e
			continue
		}
		items = append(items, ledger.Settlement{Channel: r.Channel, Index: r.Index, Preimage: r.Preimage, Close: r.Close})
		at = append(at, i)
	}
	settled, err := s.cfg.Ledger.Settle(ctx, ledger.AccountID(c.account), items, c.now)
	if err != nil {
		return nil, s.ledgerError("settle", err)
	}
	for k, st := range settled {
		res := &resp.Results[at[k]]
		res.Paid, res.Redeemed, res.Closed, res.Refund = st.Paid, st.Redeemed, st.Closed, st.Refund
		if st.Err != nil {
			res.Error = s.ledgerError("settle", st.Err)
		}
		s.metrics.paid.Add(float64(st.Paid))
	}
	return resp, nil
}

// checkParty refuses a redemption (redeem set) or close of channel id by
// a caller the ledger would refuse anyway: only the payee redeems; the
// payer and the provider may close once the channel expired (the ledger
// decides when), and a stranger learns nothing of the channel. A party
// known from the cache costs no read; when the channel was read,
// redeemed is how far it stood.
func (s *Server) checkParty(ctx context.Context, c *call, id string, redeem bool) (redeemed int64, e *Error) {
	parties, ok := s.parties.get(id)
	if !ok {
		ch, e := s.loadChannel(ctx, c, id)
		if e != nil {
			return 0, e
		}
		parties = [2]string{string(ch.Payer), string(ch.Payee)}
		s.parties.put(ch.ID, parties[0], parties[1])
		redeemed = ch.Redeemed
	}
	switch {
	case c.account == parties[1]:
		return redeemed, nil
	case c.account != parties[0] && !c.isProvider:
		return 0, apiError(http.StatusNotFound, CodeNotFound, "no channel %q", id)
	case redeem:
		return 0, apiError(http.StatusForbidden, CodeForbidden, "only the channel's payee may redeem it")
	}
	return redeemed, nil
}

func (s *Server) audit(ctx context.Context, c *call) (any, *Error) {
	minted, sum, err := s.cfg.Ledger.Audit(ctx)
	if err != nil && !errors.Is(err, ledger.ErrCorrupt) {
		return nil, s.ledgerError("audit", err)
	}
	if err != nil {
		s.cfg.Logger.Error("broker: AUDIT FAILED", "err", err)
	}
	return AuditResponse{Minted: minted, SumOfBalances: sum, Conserved: err == nil && minted == sum}, nil
}
