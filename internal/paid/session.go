package paid

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"time"

	"github.com/floodgate-p2p/floodgate/internal/bencode"
	"github.com/floodgate-p2p/floodgate/internal/credit"
	"github.com/floodgate-p2p/floodgate/internal/engine"
	"github.com/floodgate-p2p/floodgate/internal/identity"
	"github.com/floodgate-p2p/floodgate/internal/metainfo"
	"github.com/floodgate-p2p/floodgate/internal/terms"
	"github.com/floodgate-p2p/floodgate/internal/wire"
)

// Broker is what a session needs from the provider's broker. The real
// implementation is *broker.Client; tests may wrap it.
type Broker interface {
	// Open locks length×unit of our money for payee and returns the
	// broker-signed voucher, its signature verified against the
	// provider's key (broker.Client does when given the key).
	Open(ctx context.Context, idemKey, payee string, root identity.Digest, length, unit int64, expiry time.Time) (identity.Voucher, error)
	// Redeem settles channels we are the payee of, in as few round trips
	// as it can: each is redeemed up to its index, then closed (the rest
	// returns to the payer) when asked. It returns a result per channel,
	// in order; on an error for the call as a whole, the results it has
	// (possibly none) and the error.
	Redeem(ctx context.Context, rs []Redemption) ([]RedemptionResult, error)
	// Channel reads a channel we are a party to, as the broker has it.
	Channel(ctx context.Context, id string) (ChannelState, error)
}

// ChannelState is what the broker says of a channel: its parties, how far
// it is redeemed and whether it is closed.
type ChannelState struct {
	Payer, Payee string
	Redeemed     int64
	Closed       bool
}

// Redemption asks the broker to claim a channel's value up to Index (when
// positive) with Preimage, and then to close it if Close is set.
type Redemption struct {
	Channel  string
	Index    int64
	Preimage identity.Digest
	Close    bool
}

// RedemptionResult is what became of one Redemption: what this call paid
// and the channel's redeemed index afterwards (the session counts its
// earnings from the index, which a lost answer cannot hide), whether the
// channel is now closed, and what went wrong (Err). A channel whose
// redemption failed is never closed; one whose redemption succeeded and
// whose close failed carries both the payment and the error.
type RedemptionResult struct {
	Paid     int64
	Redeemed int64
	Closed   bool
	Err      error
}

// Complaint is the evidence an uploader files against an account that
// stopped paying: what it counts as owed and paid, and the channels the
// account paid through with the highest index received on each.
type Complaint struct {
	Account  string
	InfoHash metainfo.Hash
	Owed     int64
	Paid     int64
	Channels map[string]int64 // channel id -> highest index received
}

// Complainer is implemented by brokers that accept complaints. Complaints
// are evidence for the provider; they never move money.
type Complainer interface {
	Complain(ctx context.Context, c Complaint) error
}

// Config configures a Session.
type Config struct {
	Torrent *metainfo.MetaInfo
	Terms   *terms.Terms
	// Key and Cert are our identity; Cert must be the provider's
	// certificate for Key.
	Key  *identity.PrivateKey
	Cert identity.Certificate
	// Class is the service class we buy with as a downloader.
	Class terms.Class
	// Broker opens, redeems and closes channels.
	Broker Broker
	// Free serves peers that do not speak the Floodgate extension (plain
	// BitTorrent clients) without payment. Floodgate peers always pay.
	Free bool
	// Credit tunes the uploader's credit windows (zero = defaults).
	Credit credit.Config
	// MaxSpend caps what this session locks and pays as a downloader;
	// 0 = no cap beyond the balance.
	MaxSpend int64
	// OpenGate, if set, holds back every channel open until it is closed:
	// `get` closes it once the broker answered the balance it shows, so
	// the balance is the one before this download locked anything (the
	// question races the node's start-up, and usually wins long before
	// the first channel is wanted).
	OpenGate <-chan struct{}
	// Balance, if set, reports the buyer's free balance from before this
	// download locked anything, once known (ok false until then, or if
	// the broker could not tell; get asks for it at start and closes
	// OpenGate once answered, so set both). It is called under the
	// session's lock and must not block. A buyer whose balance and
	// MaxSpend (if set) cover the whole purchase richBuyerFactor times
	// sizes channels by what is left to buy (see richValue): fewer
	// broker round trips, and it can afford what they lock.
	Balance func() (units int64, ok bool)
	// ChannelValue is how many units one channel locks (default: the
	// price of 64 MiB at our class, at least 64); a rich buyer's may
	// lock up to four times as much (see richValue), and none more than
	// the broker's longest chain.
	ChannelValue int64
	// ChannelTTL is how long a channel is valid (default 1 h).
	ChannelTTL time.Duration
	// RedeemEvery is how often earnings are redeemed (default 2 s).
	RedeemEvery time.Duration
	// OverdueAfter: an account whose debt has not shrunk this long is cut
	// off and reported (default 30 s). Keep it well above the engine's
	// snub timeout (20 s): an honest buyer cannot pay for our blocks of a
	// piece whose other blocks it asked of a peer that never sends them,
	// until it snubs that peer and asks someone else, so a shorter cut-off
	// lets fake uploaders get honest buyers refused
	// (TestAttackFakeUploadersLockTheDownloadersFunds).
	OverdueAfter time.Duration
	// StatePath persists what must survive a crash: received payments
	// not yet redeemed, and the credit book. "" keeps it in memory only.
	StatePath string
	// Logger receives payment events; nil discards them.
	Logger *slog.Logger
	// Now is the clock (default time.Now).
	Now func() time.Time
	// ExternalIPs returns our public addresses as the provider's tracker
	// reported them (BEP 24), so peers behind NAT can authenticate: a
	// peer's proof names the address it reached us at.
	ExternalIPs func() []netip.Addr
}

// Session is the engine.Payments plug-in of one torrent in one peer.
type Session struct {
	cfg     Config
	account string
	log     *slog.Logger

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu    sync.Mutex
	peers map[uint64]*peerState // by connection id

	// Downloader side.
	tab    *credit.Tab
	out    map[string]*payeeState // by payee account
	locked int64                  // units locked in our open channels
	// invoiceOpening: units of channels being opened on an invoice's
	// word alone (see invoiceLocked).
	invoiceOpening int64
	// undelivered counts payees holding a channel we opened before
	// they delivered anything (at most maxUndelivered).
	undelivered int
	payErr      error // last failure to open a channel
	complete    bool
	left        int64 // bytes still to download
	// gateOpen: channels may be opened (OpenGate closed, or none).
	gateOpen bool
	// wantedEarly lists the payees we wanted blocks from before the gate
	// opened, in that order: awaitGate opens their channels first, so the
	// maxUndelivered places go to the first uploaders we asked.
	wantedEarly []string

	// Uploader side.
	book *credit.Book
	in   map[string]*inChannel // by channel id
	// byPayer lists, per account that showed us a channel, those that
	// may still back service (see backing).
	byPayer map[string]*inChannels
	// lastPayer and lastPayerChannels cache the entry of byPayer found
	// last (see channelsOf).
	lastPayer         string
	lastPayerChannels *inChannels
	// closing is set (under mu) when Close starts: from then on nothing
	// may start goroutines that Close's wait would miss.
	closing  bool
	earned   int64             // redeemed so far
	reported map[string]bool   // accounts we filed a complaint about
	banned   map[string]string // accounts banned for bad data
	refused  map[string]string // accounts cut off, with the reason
	// quietSince: when each payer was first seen not interested in us
	// (or gone), at a redemption round (see quietPayers).
	quietSince map[string]time.Time
	dirty      bool
	closeOnce  sync.Once

	// awaitedChanged holds one pending signal that Awaited may have
	// shrunk (see AwaitedChanged).
	awaitedChanged chan struct{}
}

// peerState is what we know of one connection.
type peerState struct {
	p           engine.Peer
	nonce       [32]byte // ours, sent in our handshake
	theirNonce  [32]byte
	cert        *identity.Certificate // theirs, verified against the provider key
	authed      bool                  // they proved their key on this connection
	plain       bool                  // no Floodgate extension: a plain BitTorrent client
	class       terms.Class           // what they buy with
	account     string
	lastInvoice time.Time
	created     time.Time // when the connection was set up
	handshook   bool      // their BEP 10 handshake arrived
	wanted      bool      // we asked for blocks on this connection
	held        bool      // we held its requests (see hold) and owe it a Wake
}

// Stats is a snapshot of the money a session moved.
type Stats struct {
	// Spent is units paid to uploaders (preimages sent).
	Spent int64
	// Locked is units locked in channels we opened.
	Locked int64
	// Earned is units redeemed at the broker; Pending is received but
	// not yet redeemed.
	Earned, Pending int64
	// Owed is what uploaders are owed by us beyond what we paid (should
	// stay near zero for an honest downloader).
	Owed int64
	// Unpaid is what downloaders owe us beyond the credit grace for blocks
	// we served and they have not paid yet (pay after verify: blocks of
	// unfinished pieces).
	Unpaid int64
	// Refused lists accounts cut off for not paying.
	Refused []string
	// LastError is the last failure to open a payment channel, if any.
	LastError error
}

var _ engine.Payments = (*Session)(nil)

// NewSession validates cfg, restores persisted state and starts the
// redemption loop. Close stops it.
func NewSession(cfg Config) (*Session, error) {
	if cfg.Torrent == nil || cfg.Terms == nil || cfg.Key == nil || cfg.Broker == nil {
		return nil, errors.New("paid: Torrent, Terms, Key and Broker are required")
	}
	if cfg.Cert.Key != cfg.Key.Public() {
		return nil, errors.New("paid: certificate is for another key")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if err := cfg.Cert.Verify(cfg.Terms.Provider, cfg.Now()); err != nil {
		return nil, fmt.Errorf("paid: our certificate: %w", err)
	}
	if cfg.ChannelTTL <= 0 {
		cfg.ChannelTTL = time.Hour
	}
	if cfg.RedeemEvery <= 0 {
		cfg.RedeemEvery = 2 * time.Second
	}
	if cfg.OverdueAfter <= 0 {
		cfg.OverdueAfter = 30 * time.Second
	}
	if cfg.ChannelValue <= 0 {
		v, err := terms.PriceFor(64<<20, cfg.Class.PricePerMiB)
		if err != nil {
			return nil, err
		}
		cfg.ChannelValue = max(v, 64)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Credit.InitialWindow == 0 {
		c, err := defaultCredit(cfg.Terms, cfg.Torrent.Info.PieceLength)
		if err != nil {
			return nil, err
		}
		cfg.Credit = c
	}
	s := &Session{
		cfg:      cfg,
		account:  cfg.Cert.Account,
		log:      cfg.Logger,
		peers:    make(map[uint64]*peerState),
		tab:      credit.NewTab(),
		out:      make(map[string]*payeeState),
		in:       make(map[string]*inChannel),
		byPayer:  make(map[string]*inChannels),
		reported: make(map[string]bool),
		banned:   make(map[string]string),
		refused:  make(map[string]string),
		left:     cfg.Torrent.Info.TotalLength(),

		awaitedChanged: make(chan struct{}, 1),
	}
	book, err := s.restore()
	if err != nil {
		return nil, err
	}
	s.book = book
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.gateOpen = cfg.OpenGate == nil
	s.wg.Add(1)
	go s.redeemLoop()
	if !s.gateOpen {
		s.wg.Add(1)
		go s.awaitGate()
	}
	return s, nil
}

// awaitGate lets channel opens start once OpenGate closes, and opens the
// channels wanted meanwhile. Sizing waits too: a rich buyer's channels
// depend on the balance the gate waits for (see richValue).
func (s *Session) awaitGate() {
	defer s.wg.Done()
	select {
	case <-s.cfg.OpenGate:
	case <-s.ctx.Done():
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.gateOpen = true
	for _, account := range s.wantedEarly {
		s.ensureChannel(account)
	}
	s.wantedEarly = nil
	for account := range s.out {
		s.ensureChannel(account) // anyone else we owe
	}
}

// Account is our account id.
func (s *Session) Account() string { return s.account }

// SetLeft tells the session how much is still to download (after a resume
// check), so channels lock no more than the rest of the purchase.
func (s *Session) SetLeft(bytes int64) {
	s.mu.Lock()
	s.left = bytes
	s.mu.Unlock()
}

// SetComplete tells the session the download finished: it stops opening
// channels (a seeder only earns).
func (s *Session) SetComplete() {
	s.mu.Lock()
	s.complete = true
	s.mu.Unlock()
}

// Stats returns what the session spent, locked and earned.
func (s *Session) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := Stats{Spent: s.tab.Spent(), Locked: s.locked, Earned: s.earned, LastError: s.payErr}
	for _, ch := range s.in {
		st.Pending += (ch.lastIndex - ch.redeemedIndex) * ch.v.Unit
	}
	for _, a := range s.tab.Accounts() {
		st.Owed += s.tab.Due(a)
	}
	for _, a := range s.book.Accounts() {
		// Only debts above the grace count: the residue below it (end-game
		// duplicates, fractions of a unit) is never paid.
		if as := s.book.Status(a); s.refused[a] == "" && !as.OverdueSince.IsZero() {
			st.Unpaid += as.Unpaid
		}
	}
	for a := range s.refused {
		st.Refused = append(st.Refused, a)
	}
	return st
}

// Awaited is what peers still downloading from us owe us. They pay as the
// pieces holding our blocks verify (and batch payments for a moment, see
// payDelay), so a finished download keeps serving while it shrinks. Debts
// of peers that left or no longer want anything from us are not counted: a
// downloader that finished paid everything due before it said "not
// interested", so what it still owes (end-game duplicates, fractions of a
// unit) is residue that is never paid.
func (s *Session) Awaited() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	var awaited int64
	counted := make(map[string]bool)
	for _, ps := range s.peers {
		if ps.p == nil || !ps.authed || counted[ps.account] || s.refused[ps.account] != "" || !ps.p.Interested() {
			continue
		}
		counted[ps.account] = true
		awaited += s.book.Status(ps.account).Unpaid
	}
	return awaited
}

// AwaitedChanged receives when what Awaited reports may have shrunk: a
// payment arrived, a peer said it wants nothing more from us, a
// connection ended, an account was refused, or a failed piece was
// forgiven. Signals do not queue up beyond one, so a finished
// download waiting for its peers to pay re-reads Awaited on each.
func (s *Session) AwaitedChanged() <-chan struct{} { return s.awaitedChanged }

// signalAwaited wakes whoever waits on AwaitedChanged, without blocking.
func (s *Session) signalAwaited() {
	select {
	case s.awaitedChanged <- struct{}{}:
	default:
	}
}

// HandshakeFields implements engine.Payments: our certificate, a fresh
// nonce and the class we buy with.
func (s *Session) HandshakeFields(p engine.Peer) map[string]bencode.RawMessage {
	s.mu.Lock()
	defer s.mu.Unlock()
	ps := s.peer(p)
	cert, err := s.cfg.Cert.MarshalBinary()
	if err != nil {
		s.log.Error("encode certificate", "err", err)
		return nil
	}
	return map[string]bencode.RawMessage{
		hsCert:  mustRaw(cert),
		hsNonce: mustRaw(ps.nonce[:]),
		hsClass: mustRaw([]byte(s.cfg.Class.Name)),
	}
}

func mustRaw(b []byte) bencode.RawMessage {
	r, err := bencode.Marshal(b)
	if err != nil {
		panic(err) // a byte string always encodes
	}
	return r
}

// plainAfter: a peer that set the BEP 10 bit but sent no extension
// handshake this long after connecting is treated as a plain client.
const plainAfter = 10 * time.Second

// settle marks a silent peer plain (see plainAfter); s.mu is held.
func (s *Session) settle(ps *peerState) {
	if !ps.handshook && !ps.plain && s.cfg.Now().Sub(ps.created) > plainAfter {
		ps.plain = true
	}
}

// settled returns p's state after settle, nil if p is unknown. s.mu is
// held.
func (s *Session) settled(p engine.Peer) *peerState {
	ps := s.peers[p.ConnID()]
	if ps != nil {
		s.settle(ps)
	}
	return ps
}

func (s *Session) peer(p engine.Peer) *peerState {
	ps := s.peers[p.ConnID()]
	if ps == nil {
		ps = &peerState{p: p, nonce: newNonce(), created: s.cfg.Now()}
		s.peers[p.ConnID()] = ps
	}
	return ps
}

// PeerHandshake implements engine.Payments: it checks the peer's
// certificate and answers with our proof of key possession.
func (s *Session) PeerHandshake(p engine.Peer, hs *wire.ExtendedHandshake, supported bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	ps := s.peer(p)
	ps.handshook = true
	if !supported {
		ps.plain = true
		return nil
	}
	var certBytes, nonce, class []byte
	for key, dst := range map[string]*[]byte{hsCert: &certBytes, hsNonce: &nonce, hsClass: &class} {
		raw, ok := hs.Extra[key]
		if !ok {
			return fmt.Errorf("handshake lacks %s", key)
		}
		if err := bencode.Unmarshal(raw, dst); err != nil {
			return fmt.Errorf("handshake %s: %w", key, err)
		}
	}
	if len(nonce) != 32 {
		return fmt.Errorf("handshake nonce of %d bytes", len(nonce))
	}
	var cert identity.Certificate
	if err := cert.UnmarshalBinary(certBytes); err != nil {
		return fmt.Errorf("handshake certificate: %w", err)
	}
	if err := cert.Verify(s.cfg.Terms.Provider, s.cfg.Now()); err != nil {
		return fmt.Errorf("handshake certificate: %w", err)
	}
	if cert.Key == s.cfg.Key.Public() {
		return errors.New("peer shows our own certificate")
	}
	if why := s.banned[cert.Account]; why != "" {
		return fmt.Errorf("account %s is banned: %s", cert.Account, why)
	}
	cls, err := s.cfg.Terms.Class(string(class))
	if err != nil {
		return fmt.Errorf("handshake class: %w", err)
	}
	ps.cert, ps.class = &cert, cls
	copy(ps.theirNonce[:], nonce)
	sig := s.cfg.Key.Sign(authMessage(s.cfg.Torrent.InfoHash, ps.theirNonce, ps.nonce, cert.Key, s.cfg.Key.Public(), p.Addr(), p.Outgoing()))
	p.SendExtension(message{Type: typeAuth, Sig: sig[:]}.encode())
	return nil
}

// Message implements engine.Payments.
func (s *Session) Message(p engine.Peer, payload []byte) error {
	m, err := decodeMessage(payload)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	ps := s.peer(p)
	if m.Type != typeAuth && !ps.authed {
		return fmt.Errorf("%s before authentication", m.Type)
	}
	switch m.Type {
	case typeAuth:
		return s.onAuth(ps, m)
	case typeChannel:
		return s.onChannel(ps, m)
	case typePay:
		return s.onPay(ps, m)
	case typeInvoice:
		s.onInvoice(ps, m)
	case typeRefuse:
		s.log.Warn("peer refuses service", "peer", ps.account, "code", m.Code, "reason", m.Reason)
	case typeFailed:
		s.onFailed(ps, m)
	case typeClosed:
		s.onClosed(ps, m)
	}
	return nil
}

func (s *Session) onAuth(ps *peerState, m message) error {
	if ps.cert == nil {
		return errors.New("auth before handshake")
	}
	if ps.authed {
		return errors.New("second auth on one connection")
	}
	var sig identity.Signature
	copy(sig[:], m.Sig)
	// The sender signed our address as it sees it; accept any address we
	// may be reached under. A sender that dialed us signed our listening
	// port; one we dialed signed only our IP.
	var external []netip.Addr
	if s.cfg.ExternalIPs != nil {
		external = s.cfg.ExternalIPs()
	}
	verified := false
	for _, own := range ownAddrs(ps.p, external) {
		msg := authMessage(s.cfg.Torrent.InfoHash, ps.nonce, ps.theirNonce, s.cfg.Key.Public(), ps.cert.Key, own, !ps.p.Outgoing())
		if ps.cert.Key.Verify(msg, sig) {
			verified = true
			break
		}
	}
	if !verified {
		return errors.New("authentication signature does not verify (forged, or made for another address: a relay)")
	}
	if why := s.banned[ps.cert.Account]; why != "" {
		return fmt.Errorf("account %s is banned: %s", ps.cert.Account, why)
	}
	ps.authed = true
	ps.account = ps.cert.Account
	// Debts by account survive reconnects: pay what we still owe, and
	// re-show our open channel so the uploader can serve us at once.
	if po := s.out[ps.account]; po != nil {
		for _, ch := range []*outChannel{po.current, po.next} {
			if ch != nil && ch.remaining() > 0 {
				ps.p.SendExtension(message{Type: typeChannel, Voucher: ch.voucherBytes}.encode())
			}
		}
	}
	// As its payee: channels of its we closed while payments on them
	// were on the way are told again, in case it missed "closed" (it
	// pays those payments again once it hears).
	for _, ch := range s.in {
		if ch.v.Payer == ps.account && ch.closed && ch.lateRevoked {
			s.tellClosed(ps.p, ch)
		}
	}
	// Pay what we owe it; a first channel is opened only once we want
	// blocks from it (MayRequest) or it delivered.
	s.payOut(ps.account)
	ps.p.Wake()
	return nil
}

// Closed implements engine.Payments. Account-level state (debts, channels)
// stays; only the connection's handle goes.
func (s *Session) Closed(p engine.Peer) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ps := s.peers[p.ConnID()]
	if ps != nil {
		ps.p = nil
	}
	// Forget connections that never authenticated; keep authenticated
	// ones so pay-after-verify can still credit their account.
	if ps != nil && !ps.authed {
		delete(s.peers, p.ConnID())
	}
	if ps != nil && ps.authed && !s.closing && s.connFor(ps.account) == nil {
		s.payeeGone(ps.account)
	}
	s.signalAwaited()
}

// connFor returns a live authenticated connection of account, or nil.
func (s *Session) connFor(account string) engine.Peer {
	for _, ps := range s.peers {
		if ps.authed && ps.account == account && ps.p != nil {
			return ps.p
		}
	}
	return nil
}

// defaultCredit sizes credit windows for the torrent, valued at the most
// expensive class (the uploader accrues at each buyer's own price):
//   - a new account may run up a megabyte or two pieces, whichever is
//     more: enough to start at once, little for a non-payer to take;
//   - the window doubles with what the account has paid (slow start) up to
//     32 MiB plus four pieces, which covers a full request pipeline (1024
//     blocks of 16 KiB) and the pieces it spans, so an honest fast peer
//     never waits on credit;
//   - all accounts together may owe at most eight full windows, the
//     fresh (never paid) ones half of that;
//   - four pieces of unpaid residue (end-game duplicates, abandoned
//     pieces) never count as overdue.
func defaultCredit(tm *terms.Terms, pieceLength int64) (credit.Config, error) {
	var price int64
	for _, c := range tm.Classes {
		price = max(price, c.PricePerMiB)
	}
	value := func(bytes int64) (int64, error) {
		v, err := terms.PriceFor(bytes, price)
		return max(v, 1), err
	}
	initial, err := value(max(2*pieceLength, 1<<20))
	if err != nil {
		return credit.Config{}, err
	}
	window, err := value(32<<20 + 4*pieceLength)
	if err != nil {
		return credit.Config{}, err
	}
	return credit.Config{
		InitialWindow: initial,
		MaxWindow:     window,
		MaxExposure:   8 * window,
		GraceBytes:    4 * pieceLength,
		MaxResends:    3,
	}, nil
}
