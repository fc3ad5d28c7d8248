package demo

import "syscall"

// sysProcAttr puts a child in its own process group (so stop reaches its children too) and
// has the kernel kill it if the demo dies without cleaning up.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
