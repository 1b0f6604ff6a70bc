//go:build !linux

package gatewaytest

import "os/exec"

// dieWithParent has no portable equivalent outside Linux: Stop (through
// t.Cleanup or TestMain) is then the only way the gateway ends.
func dieWithParent(*exec.Cmd) {}
