package storetest

import (
	"os/exec"
	"syscall"
)

// setProcAttr has the kernel kill a Redis the tests started if the test
// binary dies without running its cleanups (a panic, a -timeout), so no
// server outlives the run.
func setProcAttr(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
