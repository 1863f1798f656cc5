// Package picker decides which blocks a downloader requests from which peer.
//
// It is pure policy: the engine tells it what the swarm has and what arrived,
// and asks it for requests; it never touches sockets, goroutines or clocks,
// so the real engine, the emulator and table tests all run the same code.
//
// The order of preference, as in mainline BitTorrent, with piece affinity
// (each piece comes from one peer while there is enough to go round):
//
//  1. blocks of pieces already started by this peer, or abandoned by the
//     peer that started them (finish what is begun, so pieces become
//     verifiable and tradable quickly; "strict priority");
//  2. while the downloader holds fewer than RandomFirst pieces, a random
//     piece (rarest-first would make every newcomer chase the same few rare
//     pieces while it has nothing to trade);
//  3. otherwise the rarest piece the peer has, ties broken at random;
//  4. when the peer has no piece left to start, blocks of pieces other
//     peers are working on, the most complete first;
//  5. in the end game, when every missing block is already requested, blocks
//     requested from other peers, at most EndGameDuplicates times each, so one
//     slow peer cannot hold back the last piece.
//
// Piece affinity matters twice. A piece from one peer completes at that
// peer's pace instead of the slowest contributor's, and, in a paid swarm
// where the downloader pays each piece after it verifies, an uploader's
// unpaid blocks never wait on another uploader: if pieces were split,
// two uploaders that each hold the downloader at its credit limit could
// each be waiting for a piece the other must finish.
package picker

import (
	"math"
	"math/bits"
	"math/rand/v2"

	"github.com/floodgate-p2p/floodgate/internal/bitfield"
)

// BlockSize is the standard request size (BEP 3 clients use 16 KiB).
const BlockSize = 16 << 10

// Block names one request: Length bytes at offset Begin of piece Piece.
type Block struct {
	Piece, Begin, Length uint32
}

// Config describes the torrent's geometry and the picker's knobs.
type Config struct {
	NumPieces   int
	PieceLength int64
	TotalLength int64
	// RandomFirst is how many pieces are picked at random before switching
	// to rarest-first (default 4).
	RandomFirst int
	// EndGameDuplicates caps how many peers may have the same block
	// outstanding in the end game (default 2).
	EndGameDuplicates int
}

// blockState is what the picker knows of one block of an unfinished piece.
type blockState struct {
	requests uint8 // outstanding requests for it
	received bool
}

// partial is a piece that has at least one block requested or received.
type partial struct {
	blocks   []blockState
	received int
	// requests is the sum of the blocks' outstanding requests.
	requests int
	// free counts blocks neither received nor requested.
	free  int
	index int // the piece
	// owner is the peer that started the piece (or took it over after it
	// was abandoned); others join it only when they have nothing else.
	owner uint64
}

// open reports whether peer may work on the piece as its own: it started
// it, or nobody has a request outstanding in it any more.
func (pp *partial) open(peer uint64) bool { return pp.owner == peer || pp.requests == 0 }

// Picker tracks piece availability and block progress for one torrent.
// It is not safe for concurrent use; the engine serialises calls.
type Picker struct {
	cfg       Config
	have      bitfield.Bitfield // verified pieces
	haveCount int               // pieces set in have
	avail     []int32           // how many connected peers have each piece
	partials  map[int]*partial
	// withFree holds the partials that have free blocks, usually a few
	// of many: Pick looks only there.
	withFree  map[int]*partial
	pending   int               // pieces neither had nor partial
	unstarted bitfield.Bitfield // those pieces, scanned a byte at a time
	free      int               // free blocks of all partials (see partial.free)
	rng       *rand.Rand
	numBlocks int // blocks in a full-size piece
}

// New returns a picker for a torrent in which nothing is held yet.
func New(cfg Config, rng *rand.Rand) *Picker {
	if cfg.RandomFirst == 0 {
		cfg.RandomFirst = 4
	}
	if cfg.EndGameDuplicates == 0 {
		cfg.EndGameDuplicates = 2
	}
	unstarted := bitfield.New(cfg.NumPieces)
	unstarted.SetAll()
	return &Picker{
		cfg:       cfg,
		have:      bitfield.New(cfg.NumPieces),
		avail:     make([]int32, cfg.NumPieces),
		partials:  make(map[int]*partial),
		withFree:  make(map[int]*partial),
		pending:   cfg.NumPieces,
		unstarted: unstarted,
		rng:       rng,
		numBlocks: int((cfg.PieceLength + BlockSize - 1) / BlockSize),
	}
}

// start makes pending piece i a partial owned by owner.
func (p *Picker) start(i int, owner uint64) *partial {
	n := p.blocksIn(i)
	pp := &partial{blocks: make([]blockState, n), free: n, owner: owner, index: i}
	p.partials[i] = pp
	p.withFree[i] = pp
	p.pending--
	p.unstarted.Clear(i)
	p.free += n
	return pp
}

// unstart forgets partial piece i; it is pending again unless had.
func (p *Picker) unstart(i int, pp *partial) {
	delete(p.partials, i)
	delete(p.withFree, i)
	p.free -= pp.free
	if !p.have.Has(i) {
		p.pending++
		p.unstarted.Set(i)
	}
}

// takeFree marks a free block of pp as requested or received.
func (p *Picker) takeFree(pp *partial) {
	pp.free--
	p.free--
	if pp.free == 0 {
		delete(p.withFree, pp.index)
	}
}

// freeAgain marks a block of pp free again.
func (p *Picker) freeAgain(pp *partial) {
	pp.free++
	p.free++
	if pp.free == 1 {
		p.withFree[pp.index] = pp
	}
}

// pieceSize is the length of piece i; only the last may be short.
func (p *Picker) pieceSize(i int) int64 {
	if i == p.cfg.NumPieces-1 {
		if r := p.cfg.TotalLength - int64(i)*p.cfg.PieceLength; r > 0 {
			return r
		}
	}
	return p.cfg.PieceLength
}

// blocksIn is the number of blocks in piece i.
func (p *Picker) blocksIn(i int) int {
	return int((p.pieceSize(i) + BlockSize - 1) / BlockSize)
}

// BlockAt returns the k-th block of piece i.
func (p *Picker) BlockAt(i, k int) Block {
	begin := int64(k) * BlockSize
	length := min(int64(BlockSize), p.pieceSize(i)-begin)
	return Block{Piece: uint32(i), Begin: uint32(begin), Length: uint32(length)}
}

// Have reports whether piece i is verified.
func (p *Picker) Have(i int) bool { return p.have.Has(i) }

// HaveCount is the number of verified pieces.
func (p *Picker) HaveCount() int { return p.haveCount }

// Done reports whether every piece is verified.
func (p *Picker) Done() bool { return p.haveCount == p.cfg.NumPieces }

// Bitfield returns a copy of the verified pieces.
func (p *Picker) Bitfield() bitfield.Bitfield { return p.have.Clone() }

// SetHave marks piece i verified (from a resume check or after its hash
// checked out) and forgets its block state.
func (p *Picker) SetHave(i int) {
	if i < 0 || i >= p.cfg.NumPieces || p.have.Has(i) {
		return
	}
	p.have.Set(i)
	p.haveCount++
	if pp, ok := p.partials[i]; ok {
		p.unstart(i, pp)
	} else {
		p.pending--
		p.unstarted.Clear(i)
	}
}

// PieceFailed forgets every block of piece i after its hash did not check
// out, so it is downloaded again.
func (p *Picker) PieceFailed(i int) {
	if pp, ok := p.partials[i]; ok {
		p.unstart(i, pp)
	}
}

// PeerHasPiece records that a connected peer announced piece i.
func (p *Picker) PeerHasPiece(i int) {
	if i >= 0 && i < len(p.avail) {
		p.avail[i]++
	}
}

// PeerHasBitfield records a connected peer's whole bitfield.
func (p *Picker) PeerHasBitfield(bf bitfield.Bitfield) {
	for i := range p.avail {
		if bf.Has(i) {
			p.avail[i]++
		}
	}
}

// PeerGone removes a disconnected peer's pieces from the availability counts.
func (p *Picker) PeerGone(bf bitfield.Bitfield) {
	for i := range p.avail {
		if bf.Has(i) && p.avail[i] > 0 {
			p.avail[i]--
		}
	}
}

// Availability is how many connected peers have piece i.
func (p *Picker) Availability(i int) int { return int(p.avail[i]) }

// Interesting reports whether the peer has any piece we still need.
func (p *Picker) Interesting(peerHas bitfield.Bitfield) bool {
	if p.Done() {
		return false
	}
	have := p.have.Bytes()
	for j, x := range peerHas.Bytes() {
		if j < len(have) && x&^have[j] != 0 {
			return true
		}
	}
	return false
}

// Pick appends up to n new requests to out for peer (a non-zero ID the
// engine gives each connection) that has peerHas, and records them as
// outstanding. mine reports whether this peer already has a block
// outstanding; it matters only in the end game, where the same block may be
// asked of several peers.
func (p *Picker) Pick(peer uint64, peerHas bitfield.Bitfield, n int, mine func(Block) bool, out []Block) []Block {
	if n <= 0 || p.Done() {
		return out
	}
	start := len(out)
	// 1. Finish our own or abandoned pieces, the most complete first.
	out = p.pickFromPartials(peer, peerHas, true, n, out)
	// 2–3. Start new pieces.
	for len(out)-start < n && p.pending > 0 {
		i := p.choosePiece(peerHas)
		if i < 0 {
			break
		}
		out = p.takeBlocks(i, p.start(i, peer), n-(len(out)-start), out)
	}
	// 4. Help with other peers' pieces.
	if len(out)-start < n {
		out = p.pickFromPartials(peer, peerHas, false, n-(len(out)-start), out)
	}
	// 5. End game: everything missing is requested somewhere.
	if len(out) == start && p.pending == 0 {
		out = p.pickEndGame(peerHas, n, mine, out)
	}
	return out
}

// pickFromPartials takes unrequested blocks of started pieces the peer
// has, the most complete piece first: with own set, only pieces open to
// the peer (which it then owns); otherwise any.
func (p *Picker) pickFromPartials(peer uint64, peerHas bitfield.Bitfield, own bool, n int, out []Block) []Block {
	start := len(out)
	for len(out)-start < n {
		best, bestLeft := -1, 0
		for i, pp := range p.withFree {
			if !peerHas.Has(i) || (own && !pp.open(peer)) {
				continue
			}
			// Prefer the piece closest to completion; ties by index keep
			// the choice deterministic for a given rng.
			left := len(pp.blocks) - pp.received
			if best < 0 || left < bestLeft || (left == bestLeft && i < best) {
				best, bestLeft = i, left
			}
		}
		if best < 0 {
			return out
		}
		pp := p.partials[best]
		if own {
			pp.owner = peer
		}
		out = p.takeBlocks(best, pp, n-(len(out)-start), out)
	}
	return out
}

func (p *Picker) takeBlocks(i int, pp *partial, n int, out []Block) []Block {
	for k := range pp.blocks {
		if n == 0 {
			break
		}
		b := &pp.blocks[k]
		if b.received || b.requests > 0 {
			continue
		}
		p.takeFree(pp)
		b.requests++
		pp.requests++
		out = append(out, p.BlockAt(i, k))
		n--
	}
	return out
}

// choosePiece returns a piece to start from those the peer has, or -1:
// in the random phase any of them, later one of the rarest, each equally
// likely (a biased choice would send every peer after the same pieces).
// It runs for every piece started, so it scans eight pieces at a time,
// skipping at once what the peer lacks or is already started or had, and
// draws one random number: a first pass counts the candidates (the rarest
// ones), the second takes the drawn one.
func (p *Picker) choosePiece(peerHas bitfield.Bitfield) int {
	randomPhase := p.haveCount < p.cfg.RandomFirst
	want, has := p.unstarted.Bytes(), peerHas.Bytes()
	n := min(len(want), len(has))
	rarest, count := int32(math.MaxInt32), 0
	for k := range n {
		x := want[k] & has[k]
		if randomPhase {
			count += bits.OnesCount8(x)
			continue
		}
		for x != 0 {
			bit := bits.LeadingZeros8(x) // BEP 3: the high bit is the lowest piece
			x &^= 0x80 >> bit
			switch a := p.avail[k*8+bit]; {
			case a < rarest:
				rarest, count = a, 1
			case a == rarest:
				count++
			}
		}
	}
	if count == 0 {
		return -1
	}
	pick := p.rng.IntN(count)
	for k := range n {
		x := want[k] & has[k]
		if randomPhase {
			if c := bits.OnesCount8(x); pick >= c {
				pick -= c
				continue
			}
		}
		for x != 0 {
			bit := bits.LeadingZeros8(x)
			x &^= 0x80 >> bit
			if i := k*8 + bit; randomPhase || p.avail[i] == rarest {
				if pick == 0 {
					return i
				}
				pick--
			}
		}
	}
	return -1 // not reached: the second pass meets every candidate again
}

func (p *Picker) pickEndGame(peerHas bitfield.Bitfield, n int, mine func(Block) bool, out []Block) []Block {
	start := len(out)
	for i, pp := range p.partials {
		if !peerHas.Has(i) {
			continue
		}
		for k := range pp.blocks {
			if len(out)-start >= n {
				return out
			}
			b := &pp.blocks[k]
			if b.received || int(b.requests) >= p.cfg.EndGameDuplicates {
				continue
			}
			blk := p.BlockAt(i, k)
			if mine != nil && mine(blk) {
				continue
			}
			if b.requests == 0 {
				p.takeFree(pp)
			}
			b.requests++
			pp.requests++
			out = append(out, blk)
		}
	}
	return out
}

// EndGame reports whether every missing block is already requested.
func (p *Picker) EndGame() bool { return p.pending == 0 && p.free == 0 }

// Unrequest returns an outstanding request to the pool (the peer choked us,
// rejected it, timed out or disconnected).
func (p *Picker) Unrequest(b Block) {
	pp, k := p.lookup(b)
	if pp == nil {
		return
	}
	if bs := &pp.blocks[k]; bs.requests > 0 {
		bs.requests--
		pp.requests--
		if bs.requests == 0 && !bs.received {
			p.freeAgain(pp)
		}
	}
	p.dropIfIdle(int(b.Piece), pp)
}

// dropIfIdle turns a piece with no requests and no data back into a pending
// one, so it competes again in rarest-first order.
func (p *Picker) dropIfIdle(i int, pp *partial) {
	if pp.received > 0 || pp.requests > 0 {
		return
	}
	p.unstart(i, pp)
}

// Received records an arrived block. fresh is false for a block that was
// already received (an end-game duplicate or an unsolicited block) or that
// does not belong to an unfinished piece; complete is true when it was the
// last missing block of its piece, which is now ready to be verified.
func (p *Picker) Received(b Block) (fresh, complete bool) {
	pp, k := p.lookup(b)
	if pp == nil || pp.blocks[k].received {
		return false, false
	}
	bs := &pp.blocks[k]
	bs.received = true
	if bs.requests > 0 {
		bs.requests--
		pp.requests--
	} else {
		p.takeFree(pp) // unsolicited, or its request was withdrawn
	}
	pp.received++
	return true, pp.received == len(pp.blocks)
}

// Forget marks a received block of an unfinished piece as missing again,
// so it is fetched anew: the engine calls it for the blocks a banned peer
// sent, so that honest peers never complete (and are never left unpaid
// for) pieces that hold a liar's data.
func (p *Picker) Forget(b Block) {
	pp, k := p.lookup(b)
	if pp == nil || !pp.blocks[k].received {
		return
	}
	pp.blocks[k].received = false
	pp.received--
	if pp.blocks[k].requests == 0 {
		p.freeAgain(pp)
	}
	p.dropIfIdle(int(b.Piece), pp)
}

// lookup finds the state of a block that exactly matches the piece's block
// grid; anything else (odd offsets or lengths) is not ours.
func (p *Picker) lookup(b Block) (*partial, int) {
	i := int(b.Piece)
	pp, ok := p.partials[i]
	if !ok || b.Begin%BlockSize != 0 {
		return nil, 0
	}
	k := int(b.Begin / BlockSize)
	if k >= len(pp.blocks) || p.BlockAt(i, k) != b {
		return nil, 0
	}
	return pp, k
}
