//go:build unix

package storage

import "syscall"

// oNoFollow makes open fail on a symbolic link in the final component.
const oNoFollow = syscall.O_NOFOLLOW
