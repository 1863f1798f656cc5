package interop

import "syscall"

// childAttr puts a child in a process group of its own, so that stopping it
// reaches its own children too, and has the kernel kill it if the test
// binary dies first: a test timeout panics without running t.Cleanup, and
// a seeder must not outlive the suite.
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
