//go:build cgo && !nopmdk

package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// TestPMDKMissingLibrary points the loader at libraries that do not exist,
// as on a machine without libpmemlog, and checks the skip reason names
// the apt-get line.
func TestPMDKMissingLibrary(t *testing.T) {
	saved := pmdkLibs
	reset := func() { pmdkOnce, pmdkErr = sync.Once{}, nil }
	reset()
	pmdkLibs = [2]string{"libpmem-missing-for-test.so.1", "libpmemlog-missing-for-test.so.1"}
	t.Cleanup(func() { pmdkLibs = saved; reset() })
	err := loadPMDK()
	if err == nil {
		t.Fatal("loading a missing library succeeded")
	}
	msg := pmdkSkip(err)
	for _, want := range []string{"libpmem-missing-for-test.so.1", "sudo apt-get install -y libpmemlog-dev libpmem-dev"} {
		if !strings.Contains(msg, want) {
			t.Errorf("skip reason %q lacks %q", msg, want)
		}
	}
	if _, err := (pmemlogDriver{}).create(t.TempDir()); err == nil {
		t.Error("pmemlog create succeeded without the library")
	}
}

// TestPMDKPrototypesMatchHeaders compiles pmdk_decl.h after PMDK's own
// headers, where they are installed: a declaration that differs from the
// library's is a compile error.
func TestPMDKPrototypesMatchHeaders(t *testing.T) {
	if _, err := os.Stat("/usr/include/libpmemlog.h"); err != nil {
		t.Skip("libpmemlog-dev is not installed")
	}
	cc, err := exec.LookPath("gcc")
	if err != nil {
		t.Skip("no gcc")
	}
	src := filepath.Join(t.TempDir(), "check.c")
	if err := os.WriteFile(src, []byte("#include <libpmemlog.h>\n#include <libpmem.h>\n#include \"pmdk_decl.h\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	wd, _ := os.Getwd()
	if out, err := exec.Command(cc, "-fsyntax-only", "-Werror", "-I", wd, src).CombinedOutput(); err != nil {
		t.Fatalf("pmdk_decl.h disagrees with PMDK's headers: %v\n%s", err, out)
	}
}
