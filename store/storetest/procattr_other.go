//go:build !linux

package storetest

import "os/exec"

// setProcAttr does nothing here: only Linux can tie a child's life to its
// parent's; t.Cleanup stops the servers.
func setProcAttr(*exec.Cmd) {}
