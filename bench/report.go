package main

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
)

// writeOutputs writes results.md, chart.svg and raw.csv into dir.
func writeOutputs(dir string, r *results) error {
	files := []struct {
		name  string
		write func(io.Writer, *results) error
	}{
		{"results.md", writeMarkdown},
		{"chart.svg", writeSVG},
		{"raw.csv", writeCSV},
	}
	for _, f := range files {
		if err := writeFile(filepath.Join(dir, f.name), func(w io.Writer) error { return f.write(w, r) }); err != nil {
			return err
		}
	}
	return nil
}

// writeFile writes path through a temporary file and a rename, so an
// interrupted run leaves the previous results whole.
func writeFile(path string, write func(io.Writer) error) error {
	tmp := path + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	bw := bufio.NewWriter(f)
	err = write(bw)
	if err == nil {
		err = bw.Flush()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}

// writeMarkdown writes the tables: one per workload, each row a system,
// with the machine's description above and the skipped rows below.
func writeMarkdown(w io.Writer, r *results) error {
	ew := &errWriter{w: w}
	e := r.Env
	ew.printf("# pmwal benchmark results\n\n")
	ew.printf("- CPU: %s (%d CPUs)\n- Kernel: %s\n- Go: %s\n- Date: %s\n", e.CPU, e.CPUs, e.Kernel, e.GoVersion, e.Date)
	ew.printf("- Source: %s\n- Compared: %s\n- Run: `%s` (%s; took %s)\n\n", e.Source, e.Versions, e.Command, e.Settings, r.Elapsed.Round(1e9))
	ew.printf("Median over the repetitions of the time per operation (per record for appends and reads, per open for open); " +
		"MB/s from that median (payload bytes; the whole log for open); " +
		"p99 of the latency of one call (one batch for the batch workload, one open for open), from sampled calls pooled over the repetitions; " +
		"ratio = median / median of this log on the same filesystem (lower is faster).\n")
	notes := map[string]bool{}
	var noteList []string
	for _, wl := range r.Workloads {
		rows := r.rows(wl)
		ew.printf("\n### %s\n\n", wl.Title)
		ew.printf("| system | filesystem | median/op | MB/s | p99 | ratio to pmwal |\n")
		ew.printf("|---|---|--:|--:|--:|--:|\n")
		for _, rw := range rows {
			ew.printf("| %s | %s | %s | %s | %s | %s |\n", mdEscape(rw.Sys.Label()), rw.Sys.FS,
				fmtNS(rw.Median), fmtMBps(rw.MBps), fmtNS(rw.P99), fmtRatio(rw.Ratio))
			if rw.Note != "" {
				n := fmt.Sprintf("%s on %s: %s", rw.Sys.Label(), rw.Sys.FS, rw.Note)
				if rw.Sys.Skip == "" {
					n = wl.Name + ", " + n
				}
				if !notes[n] {
					notes[n] = true
					noteList = append(noteList, n)
				}
			}
		}
	}
	if len(noteList) > 0 {
		ew.printf("\n### Rows without numbers\n\n")
		for _, n := range noteList {
			ew.printf("- %s\n", mdEscape(n))
		}
	}
	return ew.err
}

// mdEscape keeps a table cell's text from breaking the table.
func mdEscape(s string) string { return strings.ReplaceAll(s, "|", `\|`) }

// writeCSV writes every repetition of every cell.
func writeCSV(w io.Writer, r *results) error {
	ew := &errWriter{w: w}
	ew.printf("rep,workload,system,mode,fs,ns_per_op,ops\n")
	for _, s := range r.raw {
		ew.printf("%d,%s,%s,%s,%s,%.1f,%d\n", s.rep+1, s.wl, csvField(s.sys.Name), csvField(s.sys.Mode), csvField(s.sys.FS), s.ns, s.ops)
	}
	return ew.err
}

func csvField(s string) string {
	if strings.ContainsAny(s, ",\"\n") {
		return `"` + strings.ReplaceAll(s, `"`, `""`) + `"`
	}
	return s
}

// errWriter keeps the first write error.
type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) printf(format string, args ...any) {
	if e.err == nil {
		_, e.err = fmt.Fprintf(e.w, format, args...)
	}
}

// palette gives each system (name and mode) a color in the chart.
var palette = []string{"#1f5fbf", "#e07b00", "#8c8c8c", "#2e9e44", "#8e44ad", "#0b2f66", "#c0392b", "#16a085", "#7f6000"}

// writeSVG draws a horizontal bar chart of the median time per operation
// of every row, on a log scale, grouped by workload.
func writeSVG(w io.Writer, r *results) error {
	const (
		width   = 980.0
		labelW  = 330.0
		valueW  = 80.0
		barH    = 13.0
		rowGap  = 3.0
		headH   = 24.0
		top     = 60.0
		legendH = 0.0
	)
	plotW := width - labelW - valueW - 20
	type bar struct {
		label string
		value float64
		color string
	}
	type group struct {
		title string
		bars  []bar
	}
	colors := map[string]string{}
	colorOf := func(s *system) string {
		k := s.Name + "/" + s.Mode
		if c, ok := colors[k]; ok {
			return c
		}
		c := palette[len(colors)%len(palette)]
		colors[k] = c
		return c
	}
	lo, hi := math.Inf(1), math.Inf(-1)
	var groups []group
	for _, wl := range r.Workloads {
		g := group{title: wl.Title}
		for _, rw := range r.rows(wl) {
			if math.IsNaN(rw.Median) {
				continue
			}
			label := chartLabel(rw.Sys)
			g.bars = append(g.bars, bar{label, rw.Median, colorOf(rw.Sys)})
			lo = math.Min(lo, rw.Median)
			hi = math.Max(hi, rw.Median)
		}
		if len(g.bars) > 0 {
			groups = append(groups, g)
		}
	}
	if len(groups) == 0 {
		lo, hi = 1, 10
	}
	dlo := math.Floor(math.Log10(lo))
	dhi := math.Ceil(math.Log10(hi))
	if dhi <= dlo {
		dhi = dlo + 1
	}
	x := func(v float64) float64 { return labelW + (math.Log10(v)-dlo)/(dhi-dlo)*plotW }
	height := top + legendH + 30
	for _, g := range groups {
		height += headH + float64(len(g.bars))*(barH+rowGap)
	}
	ew := &errWriter{w: w}
	ew.printf(`<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" viewBox="0 0 %.0f %.0f" font-family="sans-serif" font-size="11">`+"\n", width, height, width, height)
	ew.printf(`<rect width="100%%" height="100%%" fill="white"/>` + "\n")
	ew.printf(`<text x="10" y="20" font-size="14" font-weight="bold">%s</text>`+"\n", xmlEscape("pmwal vs PMDK, the libpmem floor, raft-wal and tidwall/wal: median time per operation (log scale, shorter is faster)"))
	ew.printf(`<text x="10" y="38" fill="#555">%s</text>`+"\n", xmlEscape(fmt.Sprintf("%s, kernel %s, %s, %s", r.Env.CPU, r.Env.Kernel, r.Env.GoVersion, r.Env.Date)))
	// Decade grid lines and labels.
	gridBottom := height - 20
	for d := dlo; d <= dhi; d++ {
		gx := x(math.Pow(10, d))
		ew.printf(`<line x1="%.1f" y1="%.0f" x2="%.1f" y2="%.0f" stroke="#ddd"/>`+"\n", gx, top-8, gx, gridBottom)
		ew.printf(`<text x="%.1f" y="%.0f" text-anchor="middle" fill="#555">%s</text>`+"\n", gx, top-12, xmlEscape(fmtDecade(d)))
	}
	y := top
	for _, g := range groups {
		ew.printf(`<text x="10" y="%.1f" font-weight="bold">%s</text>`+"\n", y+headH-8, xmlEscape(g.title))
		y += headH
		for _, b := range g.bars {
			bx := x(b.value)
			ew.printf(`<text x="%.1f" y="%.1f" text-anchor="end">%s</text>`+"\n", labelW-6, y+barH-3, xmlEscape(b.label))
			ew.printf(`<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"/>`+"\n", labelW, y, math.Max(bx-labelW, 1), barH, b.color)
			ew.printf(`<text x="%.1f" y="%.1f">%s</text>`+"\n", math.Max(bx, labelW+1)+4, y+barH-3, xmlEscape(fmtNS(b.value)))
			y += barH + rowGap
		}
	}
	ew.printf("</svg>\n")
	return ew.err
}

// chartLabel names a bar: the table's label, without the PMDK rows'
// long mode, and the filesystem.
func chartLabel(s *system) string {
	l := s.Label()
	if strings.HasPrefix(s.Mode, "PMEM_IS_PMEM_FORCE") {
		l = s.Name
	}
	return l + " · " + s.FS
}

// fmtDecade renders 10^d nanoseconds as an axis label: 10 ns, 1 µs, 100 ms.
func fmtDecade(d float64) string {
	units := []string{"ns", "µs", "ms", "s"}
	i := int(d) / 3
	if d < 0 || i >= len(units) {
		return fmtNS(math.Pow(10, d))
	}
	return fmt.Sprintf("%.0f %s", math.Pow(10, d-float64(3*i)), units[i])
}

// xmlEscape escapes text for an SVG text node or attribute.
func xmlEscape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&quot;").Replace(s)
}
