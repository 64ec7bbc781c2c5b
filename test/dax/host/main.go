// Command pmwal-dax-host boots the DAX guest that test/dax/run builds,
// under QEMU (TCG) with an emulated NVDIMM backed by a file, and drives
// it:
//
//  1. the suite boot: turn the NVDIMM into an fsdax namespace, make ext4,
//     mount it with -o dax, probe MAP_SYNC and run the library's test
//     binary there (the guest's init does the work; this reads the result);
//  2. the power cuts: boot on the same NVDIMM image, let the guest check
//     the log after the previous cut and append until the host kills QEMU
//     with SIGKILL at a random moment; again and again;
//  3. a last boot that only checks the log and the filesystem (e2fsck).
//
// After every check the oracle of package daxcut compares what the guest
// found with what it had acknowledged on the console before each cut.
// Exits non-zero on any failure, including a guest that hangs.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/pmwal/wal/test/dax/daxcut"
)

var (
	qemu        = flag.String("qemu", "qemu-system-x86_64", "QEMU binary")
	kernel      = flag.String("kernel", "", "guest kernel (vmlinuz)")
	initrd      = flag.String("initrd", "", "guest initramfs")
	work        = flag.String("work", "", "directory for the NVDIMM image and the console logs")
	smp         = flag.Int("smp", 2, "guest CPUs")
	nvdimmMB    = flag.Int("nvdimm-mb", 1024, "size of the emulated NVDIMM in MiB")
	suite       = flag.Bool("suite", true, "run the library's test suite in the guest")
	require     = flag.String("require", "", "comma-separated tests that must pass (not skip) in the suite boot")
	suiteTime   = flag.Duration("suite-timeout", 8*time.Minute, "limit for the suite boot")
	cuts        = flag.Int("cuts", 20, "power cuts")
	seed        = flag.Uint64("seed", 0, "seed of the cut schedule and the workload (0: from the clock)")
	bootTime    = flag.Duration("boot-timeout", 3*time.Minute, "limit for a cut boot to start appending, and for the last boot")
	maxAfterAck = flag.Duration("max-run", time.Second, "longest an appender runs before its cut")
)

func main() {
	flag.Parse()
	if *kernel == "" || *initrd == "" || *work == "" {
		fmt.Fprintln(os.Stderr, "pmwal-dax-host: -kernel, -initrd and -work are required")
		os.Exit(2)
	}
	if *seed == 0 {
		*seed = uint64(time.Now().UnixNano())
	}
	if err := run(); err != nil {
		fmt.Printf("FAIL: %v\n", err)
		os.Exit(1)
	}
}

func run() error {
	img := filepath.Join(*work, "nvdimm.img")
	if err := os.Remove(img); err != nil && !os.IsNotExist(err) {
		return err
	}
	f, err := os.Create(img)
	if err != nil {
		return err
	}
	if err := f.Truncate(int64(*nvdimmMB) << 20); err != nil {
		return err
	}
	f.Close()
	setupDone := false
	if *suite {
		if err := runSuite(img); err != nil {
			return err
		}
		setupDone = true
	}
	if *cuts == 0 {
		return nil
	}
	return runCuts(img, !setupDone)
}

// guest is one boot of the guest.
type guest struct {
	name  string
	cmd   *exec.Cmd
	lines chan line // the console, one line at a time; closed at EOF
	start time.Time
	done  chan struct{}
	wait  error
}

type line struct {
	text string
	at   time.Time
}

func boot(name, img, args string) (*guest, error) {
	logf, err := os.Create(filepath.Join(*work, name+".console"))
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(*qemu,
		"-accel", "tcg,thread=multi", "-cpu", "max", "-smp", strconv.Itoa(*smp),
		// mem-ctrl: the NVDIMM's persistence domain is the memory
		// controller (ADR), so the library flushes cache lines (CLWB)
		// instead of trusting eADR.
		"-machine", "pc,nvdimm=on,nvdimm-persistence=mem-ctrl",
		"-m", fmt.Sprintf("2G,slots=2,maxmem=%dM", 2048+*nvdimmMB),
		"-object", fmt.Sprintf("memory-backend-file,id=mem1,share=on,mem-path=%s,size=%dM", img, *nvdimmMB),
		"-device", "nvdimm,id=nvdimm1,memdev=mem1",
		"-kernel", *kernel, "-initrd", *initrd,
		"-append", "console=ttyS0 loglevel=1 panic=-1 mitigations=off lsm= audit=0 "+args,
		"-nodefaults", "-display", "none", "-serial", "stdio", "-no-reboot")
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	cmd.Stderr = cmd.Stdout
	// If this process dies (the run script's overall timeout kills it),
	// QEMU must not run on.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	g := &guest{name: name, cmd: cmd, lines: make(chan line, 1<<16), done: make(chan struct{})}
	g.start = time.Now()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", *qemu, err)
	}
	go func() {
		defer logf.Close()
		r := bufio.NewReaderSize(out, 1<<16)
		for {
			s, err := r.ReadString('\n')
			logf.WriteString(s)
			// A line the cut interrupted has no newline: never trust it.
			if err == nil {
				g.lines <- line{strings.TrimRight(s, "\r\n"), time.Now()}
			}
			if err != nil {
				break
			}
		}
		close(g.lines)
		g.wait = cmd.Wait()
		close(g.done)
	}()
	return g, nil
}

func (g *guest) kill() {
	g.cmd.Process.Signal(syscall.SIGKILL)
	<-g.done
}

// consoleTail returns the end of a boot's console log for a failure report.
func consoleTail(name string, n int) string {
	b, _ := os.ReadFile(filepath.Join(*work, name+".console"))
	ls := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(ls) > n {
		ls = ls[len(ls)-n:]
	}
	return "  | " + strings.Join(ls, "\n  | ")
}

var testLine = regexp.MustCompile(`^\s*--- (PASS|FAIL|SKIP): (\S+) \(([0-9.]+)s\)`)

func runSuite(img string) error {
	fmt.Printf("== DAX guest: the library's tests on ext4 -o dax (console: %s)\n", filepath.Join(*work, "suite.console"))
	g, err := boot("suite", img, "pmwal.setup=1 pmwal.job=suite")
	if err != nil {
		return err
	}
	timer := time.NewTimer(*suiteTime)
	defer timer.Stop()
	exits := []int{}
	var fails, skips []string
	passes := 0
	passed := map[string]bool{}
	done, probed := false, 0
	for !done {
		select {
		case l, ok := <-g.lines:
			if !ok {
				done = true
				break
			}
			t := l.text
			switch {
			case strings.HasPrefix(t, "PMWAL NAMESPACE"), strings.HasPrefix(t, "PMWAL MOUNTED"), strings.HasPrefix(t, "PMWAL SUITE-START"):
				fmt.Printf("  %s  [%.1fs]\n", t, l.at.Sub(g.start).Seconds())
			case strings.HasPrefix(t, "PMWAL PROBE"):
				probed++
				fmt.Printf("  %s\n", t)
			case strings.HasPrefix(t, "PMWAL FATAL"), strings.HasPrefix(t, "PMWAL ERROR"):
				fmt.Printf("  %s\n", t)
			case strings.HasPrefix(t, "PMWAL SUITE-EXIT "):
				exit, err := strconv.Atoi(strings.TrimPrefix(t, "PMWAL SUITE-EXIT "))
				if err != nil {
					exit = -1
				}
				exits = append(exits, exit)
				fmt.Printf("  %s  [%.1fs]\n", t, l.at.Sub(g.start).Seconds())
			case strings.HasPrefix(t, "PMWAL DAX-TEST "):
				fmt.Printf("  %s\n", t)
			}
			if m := testLine.FindStringSubmatch(t); m != nil {
				top := !strings.HasPrefix(t, " ")
				switch {
				case m[1] == "FAIL":
					fails = append(fails, m[2])
				case m[1] == "SKIP" && top:
					skips = append(skips, m[2])
				case m[1] == "PASS" && top:
					passes++
					passed[m[2]] = true
				}
			}
		case <-timer.C:
			g.kill()
			return fmt.Errorf("the suite boot did not finish within %v; the end of its console:\n%s", *suiteTime, consoleTail("suite", 60))
		}
	}
	<-g.done
	fmt.Printf("  tests: %d passed, %d failed, %d skipped at the top level; boot took %.1fs\n", passes, len(fails), len(skips), time.Since(g.start).Seconds())
	if len(skips) > 0 {
		fmt.Printf("  skipped: %s\n", strings.Join(skips, " "))
	}
	switch {
	case len(fails) > 0:
		return fmt.Errorf("tests failed in the DAX guest: %s; see %s", strings.Join(fails, " "), filepath.Join(*work, "suite.console"))
	case probed < 3:
		return fmt.Errorf("the DAX probe did not pass; the end of the console:\n%s", consoleTail("suite", 40))
	case len(exits) == 0:
		return fmt.Errorf("the test binary did not run in the DAX guest; the end of the console:\n%s", consoleTail("suite", 40))
	case passes == 0:
		return fmt.Errorf("no test passed in the DAX guest")
	}
	for _, e := range exits {
		if e != 0 {
			return fmt.Errorf("the test binary exited with %d in the DAX guest; the end of the console:\n%s", e, consoleTail("suite", 40))
		}
	}
	for _, name := range strings.Split(*require, ",") {
		if name != "" && !passed[name] {
			return fmt.Errorf("%s did not pass in the DAX guest (skipped or not run); see %s", name, filepath.Join(*work, "suite.console"))
		}
	}
	return nil
}

func runCuts(img string, setup bool) error {
	fmt.Printf("== DAX guest: %d power cuts (seed %d; consoles in %s)\n", *cuts, *seed, *work)
	rng := rand.New(rand.NewPCG(*seed, 0x637574))
	var o daxcut.Oracle
	readyAvg := 6 * time.Second // boot to the first append, running average
	early, duringAppend, noAck := 0, 0, 0
	started := time.Now()
	for inc := 1; inc <= *cuts+1; inc++ {
		last := inc == *cuts+1
		name := fmt.Sprintf("cut-%02d", inc)
		job := "cut"
		if last {
			name, job = "final", "check"
		}
		args := fmt.Sprintf("pmwal.job=%s pmwal.inc=%d pmwal.seed=%d", job, inc, *seed)
		if setup && inc == 1 {
			args += " pmwal.setup=1"
		}
		// Most cuts land while the guest appends; one in five lands at a
		// random moment of the boot before that: in the kernel, in ext4's
		// journal replay, or in the log's own recovery (the guest is
		// usually ready after readyAvg).
		isEarly := !last && inc%5 == 3
		earlyAt := time.Duration((0.2 + 0.75*rng.Float64()) * float64(readyAvg))
		runFor := time.Duration(rng.Int64N(int64(*maxAfterAck)))
		g, err := boot(name, img, args)
		if err != nil {
			return err
		}
		res, err := driveCut(g, &o, uint32(inc), last, isEarly, earlyAt, runFor)
		if err != nil {
			return fmt.Errorf("boot %d (%s): %w\nthe end of its console:\n%s", inc, name, err, consoleTail(name, 40))
		}
		if res.ready > 0 {
			readyAvg = (readyAvg*3 + res.ready) / 4
		}
		switch {
		case last:
		case res.appending:
			duringAppend++
			if res.acks == 0 {
				noAck++
			}
		default:
			early++
		}
		fmt.Printf("  %s\n", res.report)
		for _, l := range res.info {
			fmt.Printf("    %s\n", l)
		}
	}
	fmt.Printf("  %d power cuts (%d while appending, %d of them before any acknowledgement reached the host; %d during boot, mount or recovery) in %.0fs\n",
		*cuts, duringAppend, noAck, early, time.Since(started).Seconds())
	fmt.Printf("  oracle: %d checks passed; %d acknowledged records seen by the host, %d acknowledged-record checks; %d records kept past the last acknowledgement the host saw; recovery dropped a torn tail %d times and %d complete-looking records\n",
		o.Checks, o.AckedTotal(), o.AckedChecks, o.KeptUnacked, o.Torn, o.Dropped)
	// The appender acknowledges every few milliseconds; cuts land up to
	// a second after it starts. Many cuts with no acknowledgement mean it
	// hangs.
	if noAck > duringAppend/2 {
		return fmt.Errorf("%d of %d cuts while appending came before any acknowledgement: does the appender hang?", noAck, duringAppend)
	}
	if o.AckedTotal() == 0 {
		return fmt.Errorf("no acknowledged record reached the host: the power cuts proved nothing")
	}
	return nil
}

type cutResult struct {
	report    string
	info      []string // pmwal info and verify, from the last boot
	ready     time.Duration
	appending bool
	acks      int
}

// driveCut reads one boot's console, feeds the oracle and cuts the power.
func driveCut(g *guest, o *daxcut.Oracle, inc uint32, last, isEarly bool, earlyAt, runFor time.Duration) (res cutResult, err error) {
	var once sync.Once
	cut := func() { once.Do(func() { g.cmd.Process.Signal(syscall.SIGKILL) }) }
	defer func() {
		if err != nil {
			cut()
		}
		<-g.done
	}()
	limit := time.NewTimer(*bootTime)
	defer limit.Stop()
	var cutTimer <-chan time.Time
	if isEarly {
		cutTimer = time.After(earlyAt)
	}
	checked := "no check (cut before it finished)"
	stage := "in the kernel's boot" // where the guest was, from its last line
	var checkTime time.Duration
	checkLast := int64(-1) // LastIndex the check reported, -1 if none
	var firstAck uint64
	var lastAck uint64
	var lastAckAt, cutAt time.Time
	killed, powerOff := false, false
	for {
		select {
		case l, ok := <-g.lines:
			if !ok {
				switch {
				case killed:
				case last && powerOff:
				default:
					return res, fmt.Errorf("QEMU exited by itself (%v) before the power cut", g.wait)
				}
				when := "while appending"
				if !res.appending {
					when = "before appending, " + stage + ","
				}
				if last {
					res.report = fmt.Sprintf("final boot: %s", checked)
				} else {
					res.report = fmt.Sprintf("cut %2d %s at %5.1fs: %s; appended from %d, %d acks seen, last %d", inc, when, cutAt.Sub(g.start).Seconds(), checked, firstAck, res.acks, lastAck)
					if res.acks > 0 {
						res.report += fmt.Sprintf(" %dms before the cut", cutAt.Sub(lastAckAt).Milliseconds())
					}
				}
				return res, nil
			}
			t := l.text
			switch {
			case strings.HasPrefix(t, "PMWAL BOOTED"):
				stage = "in init (modules, namespace, ext4 mount and journal replay)"
			case strings.HasPrefix(t, "PMWAL MOUNTED"):
				stage = "in the log's recovery and check"
			}
			switch {
			case strings.HasPrefix(t, "PMWAL CHECK "):
				s, perr := daxcut.ParseSummary(strings.TrimPrefix(t, "PMWAL CHECK "))
				if perr != nil {
					return res, fmt.Errorf("bad CHECK line %q: %v", t, perr)
				}
				if s.Inc != inc {
					return res, fmt.Errorf("CHECK line from boot %d, want %d", s.Inc, inc)
				}
				if v := o.Check(s); len(v) > 0 {
					return res, fmt.Errorf("the oracle failed after the power cut:\n  %s", strings.Join(v, "\n  "))
				}
				checkTime = l.at.Sub(g.start)
				checkLast = int64(s.Last)
				stage = "between the check and the appender's Open"
				checked = fmt.Sprintf("recovered 1..%d (torn tail %v, dropped %d) in %dms, checked at %.1fs", s.Last, s.Torn, s.Dropped, s.Millis, checkTime.Seconds())
			case strings.HasPrefix(t, "PMWAL APPEND-START first="):
				var n uint64
				if _, perr := fmt.Sscanf(t, "PMWAL APPEND-START first=%d", &n); perr != nil {
					return res, fmt.Errorf("bad line %q", t)
				}
				if checkLast >= 0 && n != uint64(checkLast)+1 {
					return res, fmt.Errorf("the check's recovery ended the log at %d, but the appender's Open right after it starts at %d", checkLast, n)
				}
				firstAck = n
				lastAck = n - 1
				o.Started(inc, n)
				res.appending = true
				res.ready = l.at.Sub(g.start)
				if !isEarly {
					cutTimer = time.After(runFor)
				}
			case strings.HasPrefix(t, "PMWAL A "):
				n, perr := strconv.ParseUint(strings.TrimPrefix(t, "PMWAL A "), 10, 64)
				if perr != nil {
					continue // a line garbled by kernel output: ignoring an ack is safe
				}
				if aerr := o.Acked(inc, n); aerr != nil {
					return res, aerr
				}
				res.acks++
				lastAck = n
				lastAckAt = l.at
			case strings.HasPrefix(t, "PMWAL FATAL"), strings.HasPrefix(t, "PMWAL ERROR"):
				if killed {
					continue
				}
				return res, fmt.Errorf("the guest failed: %s", t)
			case strings.HasPrefix(t, "PMWAL DONE"):
				powerOff = true
			case strings.HasPrefix(t, "PMWAL INFO"):
				res.info = append(res.info, strings.TrimPrefix(strings.TrimPrefix(t, "PMWAL INFO"), " "))
			case strings.HasPrefix(t, "PMWAL FSCK"):
				checked += "; " + strings.TrimPrefix(t, "PMWAL ")
			}
		case <-cutTimer:
			cutAt = time.Now()
			cut()
			killed = true
			cutTimer = nil
		case <-limit.C:
			return res, fmt.Errorf("the guest did not get to appending (or, in the last boot, to powering off) within %v", *bootTime)
		}
	}
}
