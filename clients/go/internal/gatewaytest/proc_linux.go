//go:build linux

package gatewaytest

import (
	"os/exec"
	"syscall"
)

// dieWithParent makes the kernel kill the gateway when the test process
// dies without cleaning up (a panic, a -timeout, a SIGKILL).
func dieWithParent(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
