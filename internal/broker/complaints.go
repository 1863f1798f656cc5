package broker

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/floodgate-p2p/floodgate/internal/ledger"
)

// Complaints (DESIGN §4): an uploader whose customer stopped paying files a
// signed complaint naming the account, the torrent, what it is owed and
// has been paid, and the channels the customer paid it through. Complaints
// are evidence only. They never move money; the broker stores them with a
// cheap cross-check of the named channels against the ledger, for the
// provider to act on.

// ReasonUnpaid is the reason of a complaint about an account that stopped
// paying for what it was served. It is the only reason so far; others will
// be added as new values, never by changing this one.
const ReasonUnpaid = "unpaid"

// MaxComplaintChannels bounds the channels one complaint may name, which
// bounds the ledger reads a complaint costs. A customer tops up by opening
// a new channel before the last runs dry, so an honest uploader rarely
// holds more than a few from one account.
const MaxComplaintChannels = 16

// DefaultComplaintList and MaxComplaintList are the default and largest
// "limit" of GET /broker/v1/complaints.
const (
	DefaultComplaintList = 100
	MaxComplaintList     = ledger.MaxComplaintList
)

// ChannelClaim names one channel the accused opened to pay the complainant
// and the highest chain index the complainant received on it.
type ChannelClaim struct {
	Channel string `json:"channel"`
	Index   int64  `json:"index"`
}

// ComplaintRequest is the body of POST /broker/v1/complaints. The caller
// is the complainant.
type ComplaintRequest struct {
	// Account is the accused.
	Account string `json:"account"`
	// InfoHash is the torrent, 40 lowercase hex digits.
	InfoHash string `json:"info_hash"`
	// Owed and Paid are what the accused owes the complainant in total and
	// has paid of it, in the smallest unit; Paid < Owed.
	Owed int64 `json:"owed"`
	Paid int64 `json:"paid"`
	// Channels are the channels the accused paid through, at most
	// MaxComplaintChannels, each named once.
	Channels []ChannelClaim `json:"channels"`
	// Reason is ReasonUnpaid.
	Reason string `json:"reason"`
}

// Check results for one named channel.
const (
	// CheckConfirmed: the channel pays the complainant from the accused and
	// the ledger has redeemed exactly the claimed index.
	CheckConfirmed = "confirmed"
	// CheckUnredeemed: as confirmed, but the ledger has redeemed less than
	// claimed; the complainant holds payments it has not redeemed yet.
	CheckUnredeemed = "unredeemed"
	// CheckContradicted: the ledger has redeemed more than the complainant
	// claims to have received, or the claim is beyond the chain.
	CheckContradicted = "contradicted"
	// CheckWrongParties: the channel exists but does not pay the
	// complainant from the accused. Nothing more about it is recorded.
	CheckWrongParties = "wrong_parties"
	// CheckNotFound: no such channel.
	CheckNotFound = "not_found"
)

// Verdicts of a complaint's cross-check.
const (
	// VerdictConsistent: every named channel checks out (confirmed or
	// unredeemed) and their value does not exceed the claimed Paid.
	VerdictConsistent = "consistent"
	// VerdictInconsistent: some channel does not check out, or the
	// channels carried more than the complaint says was paid.
	VerdictInconsistent = "inconsistent"
	// VerdictUnverified: the complaint names no channels.
	VerdictUnverified = "unverified"
)

// ChannelCheck is the broker's finding for one named channel.
type ChannelCheck struct {
	Channel string `json:"channel"`
	// Claimed is the index the complainant claims.
	Claimed int64 `json:"claimed_index"`
	// Result is one of the Check constants.
	Result string `json:"result"`
	// Redeemed, Unit and State are the ledger's view of the channel, set
	// only when it pays the complainant from the accused.
	Redeemed int64  `json:"redeemed,omitempty"`
	Unit     int64  `json:"unit,omitempty"`
	State    string `json:"state,omitempty"`
}

// ComplaintCheck is the broker's cross-check of a complaint's evidence
// against the ledger at filing time. It informs whoever reviews the
// complaint; the complaint is stored whatever it finds.
type ComplaintCheck struct {
	// Verdict is one of the Verdict constants.
	Verdict string `json:"verdict"`
	// Channels has one entry per named channel, in the request's order.
	Channels []ChannelCheck `json:"channels"`
	// ChannelsValue is Σ claimed index × unit over the channels that pay
	// the complainant from the accused: what the complainant admits to
	// having received through them, which cannot exceed Paid.
	ChannelsValue int64 `json:"channels_value"`
	// Problems explains an inconsistent verdict, one line per finding.
	Problems []string `json:"problems,omitempty"`
}

// ComplaintRecord is a stored complaint, as POST returns it and GET lists
// it.
type ComplaintRecord struct {
	ID          string         `json:"id"`
	Complainant string         `json:"complainant"`
	Account     string         `json:"account"`
	InfoHash    string         `json:"info_hash"`
	Owed        int64          `json:"owed"`
	Paid        int64          `json:"paid"`
	Reason      string         `json:"reason"`
	Channels    []ChannelClaim `json:"channels"`
	Check       ComplaintCheck `json:"check"`
	Created     time.Time      `json:"created"`
}

// ComplaintsResponse is the body of GET /broker/v1/complaints.
type ComplaintsResponse struct {
	Complaints []ComplaintRecord `json:"complaints"`
}

// complaintEvidence is what the ledger stores as a complaint's evidence:
// the parts of the request the ledger has no column for.
type complaintEvidence struct {
	Reason   string         `json:"reason"`
	Channels []ChannelClaim `json:"channels"`
}

// DecodeComplaintRequest reads and validates a complaint body strictly:
// the accused and every channel id are well-formed ids, the info hash 40
// lowercase hex digits, 0 <= paid < owed, channels at most
// MaxComplaintChannels with distinct ids and non-negative indexes, and the
// reason known. A missing or null channel list is an empty one.
func DecodeComplaintRequest(body []byte) (ComplaintRequest, error) {
	var req ComplaintRequest
	if err := decodeStrict(bytes.NewReader(body), &req); err != nil {
		return ComplaintRequest{}, fmt.Errorf("complaint request: %w", err)
	}
	if err := checkAccountID("account", req.Account); err != nil {
		return ComplaintRequest{}, err
	}
	if !isLowerHex(req.InfoHash, 40) {
		return ComplaintRequest{}, fmt.Errorf("%w: info_hash must be 40 lowercase hex digits", ledger.ErrInvalid)
	}
	if req.Reason != ReasonUnpaid {
		return ComplaintRequest{}, fmt.Errorf("%w: reason must be %q", ledger.ErrInvalid, ReasonUnpaid)
	}
	if req.Paid < 0 || req.Owed <= req.Paid {
		return ComplaintRequest{}, fmt.Errorf("%w: an unpaid complaint needs 0 <= paid (%d) < owed (%d)", ledger.ErrInvalid, req.Paid, req.Owed)
	}
	if len(req.Channels) > MaxComplaintChannels {
		return ComplaintRequest{}, fmt.Errorf("%w: at most %d channels, got %d", ledger.ErrInvalid, MaxComplaintChannels, len(req.Channels))
	}
	seen := make(map[string]bool, len(req.Channels))
	for _, c := range req.Channels {
		if err := checkAccountID("channel", c.Channel); err != nil {
			return ComplaintRequest{}, err
		}
		if seen[c.Channel] {
			return ComplaintRequest{}, fmt.Errorf("%w: channel %s named twice", ledger.ErrInvalid, c.Channel)
		}
		seen[c.Channel] = true
		if c.Index < 0 {
			return ComplaintRequest{}, fmt.Errorf("%w: channel %s index %d is negative", ledger.ErrInvalid, c.Channel, c.Index)
		}
	}
	if req.Channels == nil {
		req.Channels = []ChannelClaim{}
	}
	return req, nil
}

// isLowerHex reports whether s is exactly n lowercase hex digits.
func isLowerHex(s string, n int) bool {
	if len(s) != n {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// complain files a complaint by the caller. The cross-check reads each
// named channel once; its findings are stored, never a reason to refuse.
func (s *Server) complain(ctx context.Context, c *call) (any, *Error) {
	req, err := DecodeComplaintRequest(c.body)
	if err != nil {
		return nil, badBody(err)
	}
	if req.Account == c.account {
		return nil, apiError(http.StatusBadRequest, CodeInvalid, "an account cannot complain about itself")
	}
	check, e := s.checkComplaint(ctx, c.account, req)
	if e != nil {
		return nil, e
	}
	evidence, err := json.Marshal(complaintEvidence{Reason: req.Reason, Channels: req.Channels})
	if err != nil {
		return nil, apiError(http.StatusInternalServerError, CodeInternal, "encoding evidence failed")
	}
	assessment, err := json.Marshal(check)
	if err != nil {
		return nil, apiError(http.StatusInternalServerError, CodeInternal, "encoding assessment failed")
	}
	stored, err := s.cfg.Ledger.FileComplaint(ctx, c.idemKey, ledger.Complaint{
		Complainant: ledger.AccountID(c.account), Accused: ledger.AccountID(req.Account),
		InfoHash: req.InfoHash, Owed: req.Owed, Paid: req.Paid,
		Evidence: evidence, Assessment: assessment,
	}, c.now)
	if err != nil {
		return nil, s.ledgerError("file complaint", err)
	}
	rec, err := recordOf(stored)
	if err != nil {
		s.cfg.Logger.Error("broker: stored complaint unreadable", "complaint", stored.ID, "err", err)
		return nil, apiError(http.StatusInternalServerError, CodeInternal, "stored complaint unreadable")
	}
	s.metrics.complaints.WithLabelValues(rec.Check.Verdict).Inc()
	return rec, nil
}

// checkComplaint cross-checks the named channels against the ledger.
func (s *Server) checkComplaint(ctx context.Context, complainant string, req ComplaintRequest) (ComplaintCheck, *Error) {
	check := ComplaintCheck{Verdict: VerdictUnverified, Channels: make([]ChannelCheck, 0, len(req.Channels))}
	var overflow bool
	for _, claim := range req.Channels {
		cc := ChannelCheck{Channel: claim.Channel, Claimed: claim.Index}
		ch, err := s.cfg.Ledger.Channel(ctx, claim.Channel)
		switch {
		case errors.Is(err, ledger.ErrNotFound):
			cc.Result = CheckNotFound
		case err != nil:
			return ComplaintCheck{}, s.ledgerError("complaint channel", err)
		case string(ch.Payer) != req.Account || string(ch.Payee) != complainant:
			// Reveal nothing about channels of other parties.
			cc.Result = CheckWrongParties
		default:
			cc.Redeemed, cc.Unit, cc.State = ch.Redeemed, ch.Unit, ch.State
			switch {
			case claim.Index > ch.Length || ch.Redeemed > claim.Index:
				cc.Result = CheckContradicted
			case ch.Redeemed < claim.Index:
				cc.Result = CheckUnredeemed
			default:
				cc.Result = CheckConfirmed
			}
			// Length*Unit fits in int64 (the ledger checks it at open);
			// only the sum over channels can overflow.
			v := min(claim.Index, ch.Length) * ch.Unit
			if check.ChannelsValue > math.MaxInt64-v {
				overflow = true
			} else {
				check.ChannelsValue += v
			}
		}
		if cc.Result != CheckConfirmed && cc.Result != CheckUnredeemed {
			check.Problems = append(check.Problems, fmt.Sprintf("channel %s: %s", cc.Channel, cc.Result))
		}
		check.Channels = append(check.Channels, cc)
	}
	if overflow || check.ChannelsValue > req.Paid {
		check.Problems = append(check.Problems, fmt.Sprintf("the channels carried %d, more than the %d the complaint says was paid", check.ChannelsValue, req.Paid))
	}
	switch {
	case len(check.Problems) > 0:
		check.Verdict = VerdictInconsistent
	case len(req.Channels) > 0:
		check.Verdict = VerdictConsistent
	}
	return check, nil
}

// complaints lists complaints for the provider: against ?account= if
// given, else all, newest first, at most ?limit= (default
// DefaultComplaintList).
func (s *Server) complaints(ctx context.Context, c *call) (any, *Error) {
	account, limit, err := parseComplaintsQuery(c.r.URL.RawQuery)
	if err != nil {
		return nil, badBody(err)
	}
	list, err := s.cfg.Ledger.Complaints(ctx, ledger.AccountID(account), limit)
	if err != nil {
		return nil, s.ledgerError("list complaints", err)
	}
	resp := ComplaintsResponse{Complaints: make([]ComplaintRecord, 0, len(list))}
	for _, lc := range list {
		rec, err := recordOf(lc)
		if err != nil {
			s.cfg.Logger.Error("broker: stored complaint unreadable", "complaint", lc.ID, "err", err)
			return nil, apiError(http.StatusInternalServerError, CodeInternal, "stored complaint %s unreadable", lc.ID)
		}
		resp.Complaints = append(resp.Complaints, rec)
	}
	return resp, nil
}

// parseComplaintsQuery reads the listing's query strictly: only account
// and limit, each at most once.
func parseComplaintsQuery(raw string) (account string, limit int, err error) {
	q, err := url.ParseQuery(raw)
	if err != nil {
		return "", 0, fmt.Errorf("query: %w", err)
	}
	limit = DefaultComplaintList
	for k, v := range q {
		if len(v) != 1 {
			return "", 0, fmt.Errorf("%w: query parameter %q given %d times", ledger.ErrInvalid, k, len(v))
		}
		switch k {
		case "account":
			if err := checkAccountID("account", v[0]); err != nil {
				return "", 0, err
			}
			account = v[0]
		case "limit":
			n, err := strconv.Atoi(v[0])
			if err != nil || n < 1 || n > MaxComplaintList {
				return "", 0, fmt.Errorf("%w: limit must be 1..%d", ledger.ErrInvalid, MaxComplaintList)
			}
			limit = n
		default:
			return "", 0, fmt.Errorf("%w: unknown query parameter %q", ledger.ErrInvalid, k)
		}
	}
	return account, limit, nil
}

// recordOf turns a stored complaint into its API form.
func recordOf(c ledger.Complaint) (ComplaintRecord, error) {
	var ev complaintEvidence
	if err := json.Unmarshal(c.Evidence, &ev); err != nil {
		return ComplaintRecord{}, fmt.Errorf("evidence: %w", err)
	}
	var check ComplaintCheck
	if err := json.Unmarshal(c.Assessment, &check); err != nil {
		return ComplaintRecord{}, fmt.Errorf("assessment: %w", err)
	}
	if ev.Channels == nil {
		ev.Channels = []ChannelClaim{}
	}
	if check.Channels == nil {
		check.Channels = []ChannelCheck{}
	}
	return ComplaintRecord{
		ID: c.ID, Complainant: string(c.Complainant), Account: string(c.Accused), InfoHash: c.InfoHash,
		Owed: c.Owed, Paid: c.Paid, Reason: ev.Reason, Channels: ev.Channels, Check: check,
		Created: c.Created.UTC(),
	}, nil
}
