//go:build linux

package main

import (
	"os/exec"
	"syscall"
)

// detach puts a server in a process group of its own, so a Ctrl-C in the
// terminal reaches only tokenbench, which then stops it in order; and has
// the kernel kill it should tokenbench itself die without cleaning up.
func detach(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
