package main

import "fmt"

// pmdkInstall is the command that installs what the PMDK rows need.
const pmdkInstall = "sudo apt-get install -y libpmemlog-dev libpmem-dev"

// pmdkSkip is the reason printed and written for the PMDK rows when the
// libraries cannot be loaded.
func pmdkSkip(err error) string {
	return fmt.Sprintf("skipped: PMDK unavailable (%v); install it with: %s", err, pmdkInstall)
}
