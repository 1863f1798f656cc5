package picker

import (
	"math/rand/v2"
	"testing"

	"github.com/floodgate-p2p/floodgate/internal/bitfield"
)

func newPicker(pieces int, pieceLen, total int64) *Picker {
	return New(Config{NumPieces: pieces, PieceLength: pieceLen, TotalLength: total}, rand.New(rand.NewPCG(1, 2)))
}

func full(n int) bitfield.Bitfield { b := bitfield.New(n); b.SetAll(); return b }

func TestBlockGridAndShortLastPiece(t *testing.T) {
	p := newPicker(3, 32<<10, 32<<10*2+100)
	if got := p.BlockAt(2, 0); got != (Block{2, 0, 100}) {
		t.Fatalf("last block = %+v", got)
	}
	if got := p.BlockAt(1, 1); got != (Block{1, BlockSize, BlockSize}) {
		t.Fatalf("block = %+v", got)
	}
}

func TestPicksOnlyWhatPeerHasAndFinishesStartedPieces(t *testing.T) {
	p := newPicker(8, 64<<10, 8*64<<10)
	peer := bitfield.New(8)
	peer.Set(5)
	got := p.Pick(1, peer, 1, nil, nil)
	if len(got) != 1 || got[0].Piece != 5 {
		t.Fatalf("got %+v, want a block of piece 5", got)
	}
	// The same peer continues its piece before starting others.
	got = p.Pick(1, full(8), 1, nil, nil)
	if len(got) != 1 || got[0] != (Block{5, BlockSize, BlockSize}) {
		t.Fatalf("strict priority broken: %+v", got)
	}
	// Its requests come back (it choked us) after one block arrived: the
	// abandoned piece is finished first, by whoever asks next.
	p.Received(Block{5, 0, BlockSize})
	p.Unrequest(Block{5, BlockSize, BlockSize})
	got = p.Pick(2, full(8), 3, nil, nil)
	if len(got) != 3 || got[0].Piece != 5 || got[2].Piece != 5 || got[0].Begin != BlockSize {
		t.Fatalf("abandoned piece not finished first: %+v", got)
	}
}

func TestPieceAffinity(t *testing.T) {
	p := newPicker(8, 64<<10, 8*64<<10)
	a := p.Pick(1, full(8), 2, nil, nil)
	if len(a) != 2 || a[0].Piece != a[1].Piece {
		t.Fatalf("got %+v, want two blocks of one piece", a)
	}
	mine := int(a[0].Piece)
	// Peer 2 has everything: it starts its own piece rather than split
	// peer 1's, which peer 1 is still downloading.
	b := p.Pick(2, full(8), 4, nil, nil)
	for _, blk := range b {
		if int(blk.Piece) == mine {
			t.Fatalf("peer 2 joined peer 1's piece while others were free: %+v", b)
		}
	}
	// Peer 3 has only peer 1's piece: nothing else to start, so it helps.
	only := bitfield.New(8)
	only.Set(mine)
	c := p.Pick(3, only, 4, nil, nil)
	if len(c) != 2 || int(c[0].Piece) != mine || c[0].Begin != 2*BlockSize {
		t.Fatalf("peer 3 should take the rest of piece %d: %+v", mine, c)
	}
	// Peer 1 then finds its piece fully requested and starts another one.
	d := p.Pick(1, full(8), 1, nil, nil)
	if len(d) != 1 || int(d[0].Piece) == mine || int(d[0].Piece) == int(b[0].Piece) {
		t.Fatalf("peer 1 should start a new piece: %+v", d)
	}
}

func TestRarestFirstAfterRandomStart(t *testing.T) {
	p := newPicker(10, BlockSize, 10*BlockSize)
	for i := 0; i < 4; i++ {
		p.SetHave(i)
	}
	// Availability: piece 7 is the rarest of those we lack.
	for i := 4; i < 10; i++ {
		for range 3 {
			p.PeerHasPiece(i)
		}
	}
	p.avail[7] = 1
	got := p.Pick(1, full(10), 1, nil, nil)
	if len(got) != 1 || got[0].Piece != 7 {
		t.Fatalf("got %+v, want piece 7", got)
	}
}

func TestReceiveCompletesPieceAndFailureResets(t *testing.T) {
	p := newPicker(1, 2*BlockSize, 2*BlockSize)
	reqs := p.Pick(1, full(1), 10, nil, nil)
	if len(reqs) != 2 {
		t.Fatalf("want 2 requests, got %d", len(reqs))
	}
	if fresh, done := p.Received(reqs[0]); !fresh || done {
		t.Fatal("first block")
	}
	if fresh, _ := p.Received(reqs[0]); fresh {
		t.Fatal("duplicate counted as fresh")
	}
	if _, done := p.Received(reqs[1]); !done {
		t.Fatal("piece should be complete")
	}
	p.PieceFailed(0)
	if again := p.Pick(1, full(1), 10, nil, nil); len(again) != 2 {
		t.Fatalf("after failure want 2 requests again, got %d", len(again))
	}
}

func TestEndGameDuplicatesBounded(t *testing.T) {
	p := newPicker(1, BlockSize, BlockSize)
	a := p.Pick(1, full(1), 5, nil, nil)
	if len(a) != 1 {
		t.Fatal("want the only block")
	}
	if !p.EndGame() {
		t.Fatal("should be in end game")
	}
	mineA := func(b Block) bool { return b == a[0] }
	if dup := p.Pick(1, full(1), 5, mineA, nil); len(dup) != 0 {
		t.Fatal("must not duplicate to the same peer")
	}
	b := p.Pick(1, full(1), 5, func(Block) bool { return false }, nil)
	if len(b) != 1 || b[0] != a[0] {
		t.Fatalf("end game duplicate: %+v", b)
	}
	if c := p.Pick(1, full(1), 5, func(Block) bool { return false }, nil); len(c) != 0 {
		t.Fatal("duplicates must be capped at 2")
	}
}

func TestUnrequestReturnsBlocksAndIgnoresForeignBlocks(t *testing.T) {
	p := newPicker(2, BlockSize, 2*BlockSize)
	a := p.Pick(1, full(2), 2, nil, nil)
	for _, b := range a {
		p.Unrequest(b)
	}
	if b := p.Pick(1, full(2), 2, nil, nil); len(b) != 2 {
		t.Fatalf("blocks not returned: %+v", b)
	}
	for _, bad := range []Block{{0, 1, BlockSize}, {0, 0, 5}, {9, 0, BlockSize}} {
		if fresh, _ := p.Received(bad); fresh {
			t.Fatalf("foreign block %+v accepted", bad)
		}
		p.Unrequest(bad) // must not panic
	}
}

func TestPickUntilDone(t *testing.T) {
	const n = 37
	p := newPicker(n, 4*BlockSize, n*4*BlockSize-1000)
	for !p.Done() {
		reqs := p.Pick(1, full(n), 7, nil, nil)
		if len(reqs) == 0 {
			t.Fatal("stuck before done")
		}
		for _, b := range reqs {
			if _, done := p.Received(b); done {
				p.SetHave(int(b.Piece))
			}
		}
	}
	if p.Interesting(full(n)) {
		t.Fatal("a finished picker wants nothing")
	}
}

func TestForgetRefetchesABlock(t *testing.T) {
	p := newPicker(1, 2*BlockSize, 2*BlockSize)
	reqs := p.Pick(1, full(1), 10, nil, nil)
	p.Received(reqs[0])
	p.Forget(reqs[0])
	p.Forget(reqs[0]) // twice is harmless
	if _, done := p.Received(reqs[1]); done {
		t.Fatal("piece complete although a forgotten block is missing")
	}
	again := p.Pick(1, full(1), 10, nil, nil)
	if len(again) != 1 || again[0] != reqs[0] {
		t.Fatalf("want the forgotten block again, got %+v", again)
	}
}

// checkInvariants recomputes the picker's counters from its block states.
func checkInvariants(t *testing.T, p *Picker) {
	t.Helper()
	free, pending := 0, 0
	for i := range p.cfg.NumPieces {
		pp, partial := p.partials[i]
		switch {
		case p.have.Has(i):
			if partial || p.unstarted.Has(i) {
				t.Fatalf("had piece %d is partial %v or unstarted %v", i, partial, p.unstarted.Has(i))
			}
		case partial:
			if p.unstarted.Has(i) {
				t.Fatalf("partial piece %d marked unstarted", i)
			}
			f, r, got := 0, 0, 0
			for _, b := range pp.blocks {
				if !b.received && b.requests == 0 {
					f++
				}
				if b.received {
					got++
				}
				r += int(b.requests)
			}
			if f != pp.free || r != pp.requests || got != pp.received {
				t.Fatalf("piece %d: free %d/%d requests %d/%d received %d/%d", i, pp.free, f, pp.requests, r, pp.received, got)
			}
			if _, listed := p.withFree[i]; listed != (f > 0) {
				t.Fatalf("piece %d with %d free blocks listed %v", i, f, listed)
			}
			free += f
		default:
			if !p.unstarted.Has(i) {
				t.Fatalf("pending piece %d not marked unstarted", i)
			}
			pending++
		}
	}
	for i := range p.withFree {
		if _, ok := p.partials[i]; !ok {
			t.Fatalf("piece %d listed with free blocks but not partial", i)
		}
	}
	if free != p.free || pending != p.pending {
		t.Fatalf("free %d (want %d), pending %d (want %d)", p.free, free, p.pending, pending)
	}
}

// Random operations in any order keep the counters Pick relies on exact,
// and every pick is a block the peer has and that is still missing.
func TestPickerCountersUnderRandomOperations(t *testing.T) {
	for seed := range uint64(50) {
		randomOperations(t, seed)
	}
}

func randomOperations(t *testing.T, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 8))
	const pieces = 29
	p := New(Config{NumPieces: pieces, PieceLength: 4 * BlockSize, TotalLength: pieces*4*BlockSize - 5000}, rand.New(rand.NewPCG(3, 4)))
	type req struct {
		peer uint64
		b    Block
	}
	var out []req
	peers := make([]bitfield.Bitfield, 4)
	for i := range peers {
		peers[i] = bitfield.New(pieces)
		for j := range pieces {
			if rng.IntN(3) > 0 {
				peers[i].Set(j)
			}
		}
	}
	step := 0
	for ; step < 20000 && !p.Done(); step++ {
		switch op := rng.IntN(10); {
		case op < 4:
			k := rng.IntN(len(peers))
			mine := func(b Block) bool {
				for _, r := range out {
					if r.peer == uint64(k+1) && r.b == b {
						return true
					}
				}
				return false
			}
			for _, b := range p.Pick(uint64(k+1), peers[k], 1+rng.IntN(6), mine, nil) {
				if !peers[k].Has(int(b.Piece)) || p.Have(int(b.Piece)) {
					t.Fatalf("step %d: picked %+v the peer lacks or we have", step, b)
				}
				out = append(out, req{uint64(k + 1), b})
			}
		case op < 7 && len(out) > 0:
			j := rng.IntN(len(out))
			r := out[j]
			out = append(out[:j], out[j+1:]...)
			if _, done := p.Received(r.b); done {
				if rng.IntN(8) == 0 {
					p.PieceFailed(int(r.b.Piece))
				} else {
					p.SetHave(int(r.b.Piece))
				}
			}
		case op < 9 && len(out) > 0:
			j := rng.IntN(len(out))
			p.Unrequest(out[j].b)
			out = append(out[:j], out[j+1:]...)
		case op == 9:
			p.Forget(p.BlockAt(rng.IntN(pieces), rng.IntN(4)))
		default:
			peers[rng.IntN(len(peers))].Set(rng.IntN(pieces))
		}
		checkInvariants(t, p)
		if want := p.pending == 0 && p.free == 0; p.EndGame() != want {
			t.Fatalf("step %d: EndGame %v", step, p.EndGame())
		}
	}
	if !p.Done() {
		t.Fatalf("seed %d: %d of %d pieces after %d steps", seed, p.HaveCount(), pieces, step)
	}
}

// BenchmarkPickWholeTorrent downloads a 4096-piece torrent (1 GiB at
// 256 KiB) from one peer, a piece per Pick, as a fast seeder's leecher does.
func BenchmarkPickWholeTorrent(b *testing.B) {
	const pieces = 4096
	peer := full(pieces)
	b.ReportAllocs()
	for range b.N {
		p := newPicker(pieces, 16*BlockSize, pieces*16*BlockSize)
		var reqs []Block
		for !p.Done() {
			reqs = p.Pick(1, peer, 16, nil, reqs[:0])
			for _, blk := range reqs {
				if _, done := p.Received(blk); done {
					p.SetHave(int(blk.Piece))
				}
			}
		}
	}
}

// Equally good pieces are equally likely, whatever the gaps between them:
// a biased choice (say, the first candidate after a random offset) sends
// every peer after the same pieces and costs the swarm its diversity.
func TestChoosePieceIsUniform(t *testing.T) {
	candidates := []int{0, 1, 2, 3, 20, 40, 41, 63}
	peer := bitfield.New(64)
	for _, i := range candidates {
		peer.Set(i)
	}
	for _, phase := range []string{"random", "rarest"} {
		p := newPicker(64, BlockSize, 64*BlockSize)
		if phase == "rarest" {
			p.cfg.RandomFirst = 1
			p.SetHave(30) // not a candidate
			for i := range 64 {
				p.avail[i] = 3
			}
		}
		const draws = 8000
		counts := map[int]int{}
		for range draws {
			counts[p.choosePiece(peer)]++
		}
		for _, i := range candidates {
			if c := counts[i]; c < draws/len(candidates)*8/10 || c > draws/len(candidates)*12/10 {
				t.Fatalf("%s phase: piece %d chosen %d times of %d, want about %d; all: %v", phase, i, c, draws, draws/len(candidates), counts)
			}
		}
	}
}
