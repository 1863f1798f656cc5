//go:build !unix

package storage

// oNoFollow is zero where the platform has no O_NOFOLLOW; the symbolic
// link checks at Open time still apply.
const oNoFollow = 0
