package main

import (
	"bufio"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"unicode/utf8"
)

func runDump(e env) error {
	fs := newFlags("dump", "DIR [--from N] [--to M] [--format text|json|raw] [--preview BYTES]",
		"Prints records from index N to M (default: all).\n"+
			"  text: one line per record: index, size, and a preview, escaped when the record is\n"+
			"        printable text and in hex otherwise\n"+
			"  json: one JSON object per line: index, size, and data (base64, the whole record)\n"+
			"  raw:  the records' bytes back to back, nothing else (for records that delimit themselves)\n"+
			"Read-only, like verify.", e.stderr)
	from := fs.Uint64("from", 0, "first index to print (default: the log's first)")
	to := fs.Uint64("to", math.MaxUint64, "last index to print (default: the log's last)")
	format := fs.String("format", "text", "text, json or raw")
	preview := fs.Int("preview", 48, "bytes of each record shown in text format")
	pos, err := parse(fs, e.args, 1)
	if err != nil {
		return err
	}
	if *format != "text" && *format != "json" && *format != "raw" {
		fmt.Fprintf(e.stderr, "pmwal dump: unknown --format %q\n", *format)
		fs.Usage()
		return fmt.Errorf("%w: format", errUsage)
	}
	if *preview < 0 {
		fmt.Fprintln(e.stderr, "pmwal dump: --preview must not be negative")
		return fmt.Errorf("%w: preview", errUsage)
	}
	l, err := openReadOnly(pos[0], false)
	if err != nil {
		return err
	}
	defer l.Close()
	start := max(*from, l.FirstIndex())
	w := bufio.NewWriterSize(e.stdout, 1<<16)
	it := l.Records(start)
	for idx, rec := range it.All() {
		if idx > *to {
			break
		}
		switch *format {
		case "text":
			fmt.Fprintf(w, "%d\t%d\t%s\n", idx, len(rec), previewOf(rec, *preview))
		case "json":
			b, _ := json.Marshal(struct {
				Index uint64 `json:"index"`
				Size  int    `json:"size"`
				Data  string `json:"data"`
			}{idx, len(rec), base64.StdEncoding.EncodeToString(rec)})
			w.Write(append(b, '\n'))
		case "raw":
			w.Write(rec)
		}
	}
	if err := it.Err(); err != nil {
		w.Flush()
		return fmt.Errorf("%w: %v", errProblem, err)
	}
	return w.Flush()
}

// previewOf shows the first n bytes of rec: quoted and escaped when they
// are text (UTF-8, printable but for \t, \n and \r), else in hex; "..."
// marks a cut.
func previewOf(rec []byte, n int) string {
	p, more := rec, ""
	if len(p) > n {
		p, more = p[:n], "..."
	}
	raw := p
	if more != "" {
		for i := 0; i < utf8.UTFMax-1 && !utf8.Valid(p) && len(p) > 0; i++ {
			p = p[:len(p)-1] // a character cut by the preview's end
		}
	}
	text := utf8.Valid(p)
	for _, r := range string(p) {
		if text && !strconv.IsPrint(r) && r != '\t' && r != '\n' && r != '\r' {
			text = false
		}
	}
	if text {
		return strconv.Quote(string(p)) + more
	}
	return "hex:" + hex.EncodeToString(raw) + more
}
