//go:build !linux

package interop

import "syscall"

// childAttr puts a child in a process group of its own, so that stopping it
// reaches its own children too. (Only Linux can also tie the child's life
// to the test binary's.)
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
