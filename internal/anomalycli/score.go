package anomalycli

import (
	"bufio"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/modelmon/modelmon/anomaly"
	"github.com/modelmon/modelmon/internal/statefile"
)

// Score reads a CSV series from in, scores it with the named algorithm of
// the anomaly package (anomaly.Default when empty) and writes
// timestamp,value,anomaly_score to out: one row per input row, in input
// order, with the timestamp and value copied verbatim.
//
// The first row may be a header (it is one when its first field is not a
// timestamp). Timestamps are NAB's "2006-01-02 15:04:05" (UTC), RFC 3339, or
// Unix seconds; values are decimal numbers, with "NaN" or an empty field for
// a missing value (scored 0). Rows with repeated or out-of-order timestamps
// are kept and scored 0, as the detectors skip them. Errors name the input
// line. Input without a row to score is an error, as it is for the
// exporter's profile and drift: "empty file", or "no rows after the header".
func Score(in io.Reader, out io.Writer, algorithm string) error {
	if algorithm == "" {
		algorithm = anomaly.Default
	}
	det, err := anomaly.New(algorithm, anomaly.Options{})
	if err != nil {
		return err
	}
	r := csv.NewReader(bufio.NewReader(in))
	r.FieldsPerRecord = -1
	r.ReuseRecord = true
	w := bufio.NewWriter(out)
	if _, err := w.WriteString("timestamp,value,anomaly_score\n"); err != nil {
		return err
	}
	first, header, records, rows := true, false, 0, 0
	buf := make([]byte, 0, 128)
	for {
		rec, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		records++
		if err != nil {
			// Not r.FieldPos: it panics when the failed row has no field.
			return fmt.Errorf("couldn't read CSV: %w", err)
		}
		line, _ := r.FieldPos(0)
		if len(rec) == 1 && strings.TrimSpace(rec[0]) == "" {
			continue
		}
		if len(rec) < 2 {
			return fmt.Errorf("line %d: want 2 fields (timestamp,value), got %d", line, len(rec))
		}
		ts, tv := strings.TrimSpace(rec[0]), strings.TrimSpace(rec[1])
		t, err := ParseTimestamp(ts)
		if err != nil {
			if first {
				first, header = false, true
				continue // a header
			}
			return fmt.Errorf("line %d: %w", line, err)
		}
		first = false
		v, err := parseValue(tv)
		if err != nil {
			return fmt.Errorf("line %d: %w", line, err)
		}
		rows++
		res := det.Update(t, v)
		buf = buf[:0]
		buf = appendField(buf, ts)
		buf = append(buf, ',')
		buf = appendField(buf, tv)
		buf = append(buf, ',')
		buf = strconv.AppendFloat(buf, res.Score, 'g', -1, 64)
		buf = append(buf, '\n')
		if _, err := w.Write(buf); err != nil {
			return err
		}
	}
	// A header alone scores nothing: most likely a file cut short or an
	// export that matched no data, which must not pass for a scored series.
	switch {
	case rows > 0:
	case header:
		return errors.New("no rows after the header")
	case records == 0:
		return errors.New("empty file")
	default:
		return errors.New("no rows")
	}
	return w.Flush()
}

// appendField appends a CSV field, quoted when it has to be.
func appendField(buf []byte, s string) []byte {
	if !strings.ContainsAny(s, ",\"\r\n") {
		return append(buf, s...)
	}
	return append(append(append(buf, '"'), strings.ReplaceAll(s, `"`, `""`)...), '"')
}

// ScoreFile is Score from the file input to the file output; "-" means
// standard input or output. Errors name the input ("stdin" for "-"), or say
// the output could not be written. A file is replaced whole or not at all,
// never left half-written or holding a header alone, with
// statefile.WriteFile, as the exporter's profile writes its output: the
// scores go to output.tmp, flushed to the disk when complete, then renamed
// over output.
func ScoreFile(input, output, algorithm string) error {
	in, name := io.Reader(os.Stdin), "stdin"
	if input != "-" {
		f, err := os.Open(input)
		if err != nil {
			return fmt.Errorf("couldn't open input: %w", err)
		}
		defer f.Close()
		in, name = f, input
	}
	if output == "-" {
		if err := Score(in, os.Stdout, algorithm); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		return nil
	}
	var scoreErr error
	ow := &outputWriter{}
	err := statefile.WriteFile(output, func(w io.Writer) error {
		ow.w = w
		scoreErr = Score(in, ow, algorithm)
		return scoreErr
	})
	switch {
	case ow.err != nil: // Score failed for want of writing, not for its input
		return fmt.Errorf("couldn't write output: %w", ow.err)
	case scoreErr != nil:
		return fmt.Errorf("%s: %w", name, scoreErr)
	case err != nil:
		return fmt.Errorf("couldn't write output: %w", err)
	}
	return nil
}

// outputWriter keeps the first error of writing to w.
type outputWriter struct {
	w   io.Writer
	err error
}

func (o *outputWriter) Write(p []byte) (int, error) {
	n, err := o.w.Write(p)
	if err != nil && o.err == nil {
		o.err = err
	}
	return n, err
}

// timeLayouts are the timestamp layouts ParseTimestamp accepts besides Unix
// seconds; those without a zone are UTC.
var timeLayouts = []string{
	"2006-01-02 15:04:05",
	time.RFC3339Nano,
	"2006-01-02T15:04:05",
	"2006-01-02 15:04",
}

// ParseTimestamp parses NAB's "2006-01-02 15:04:05" (UTC), RFC 3339, or Unix
// seconds (possibly fractional).
func ParseTimestamp(s string) (time.Time, error) {
	for _, l := range timeLayouts {
		if t, err := time.Parse(l, s); err == nil {
			return t, nil
		}
	}
	if f, err := strconv.ParseFloat(s, 64); err == nil && !math.IsNaN(f) && !math.IsInf(f, 0) && math.Abs(f) < 1e12 {
		sec, frac := math.Modf(f)
		return time.Unix(int64(sec), int64(math.Round(frac*1e9))).UTC(), nil
	}
	return time.Time{}, fmt.Errorf("invalid timestamp %q: want \"2006-01-02 15:04:05\", RFC 3339 or Unix seconds", s)
}

func parseValue(s string) (float64, error) {
	if s == "" {
		return math.NaN(), nil
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return 0, fmt.Errorf("invalid value %q: want a number", s)
	}
	return v, nil
}
