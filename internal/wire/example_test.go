package wire_test

import (
	"bytes"
	"fmt"
	"io"

	"github.com/floodgate-p2p/floodgate/internal/wire"
)

// A connection's reader recycles one block buffer: piece payloads land in
// it without allocating and must be consumed (copied into the piece) before
// the next read.
func ExampleReader_ReadMessageInto() {
	var conn bytes.Buffer
	var ih, id [20]byte
	_ = wire.WriteHandshake(&conn, wire.NewHandshake(ih, id))
	var out []byte
	for _, m := range []wire.Message{
		{ID: wire.HaveAll},
		wire.NewPiece(3, 0, []byte("block data")),
		{Keepalive: true},
	} {
		out, _ = m.AppendBinary(out)
	}
	conn.Write(out)

	hs, err := wire.ReadHandshake(&conn)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("extensions:", hs.SupportsExtensions(), "fast:", hs.SupportsFast())
	r := wire.NewReader(&conn, wire.Limits{MaxBitfield: (1000 + 7) / 8})
	buf := make([]byte, wire.BlockSize)
	for {
		m, err := r.ReadMessageInto(buf)
		if err == io.EOF {
			return
		}
		if err != nil {
			fmt.Println("close:", err)
			return
		}
		fmt.Println(m)
	}
	// Output:
	// extensions: true fast: true
	// have_all
	// piece(3, 0, 10 bytes)
	// keepalive
}
