package driftcli

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/modelmon/modelmon/drift"
	"github.com/modelmon/modelmon/internal/parquetdata"
	"github.com/modelmon/modelmon/internal/statefile"
)

// The data formats, values of --format.
const (
	FormatCSV     = "csv"
	FormatJSONL   = "jsonl"
	FormatParquet = "parquet"
)

// stdinName names standard input in error messages.
const stdinName = "stdin"

// dataFormat returns the format of the data file path: the one its extension
// says (.csv, .jsonl, .ndjson, .parquet), else format, which standard input
// ("-") needs.
func dataFormat(path, format string) (string, error) {
	switch format {
	case "", FormatCSV, FormatJSONL, FormatParquet:
	default:
		return "", fmt.Errorf("unknown format %q (want csv, jsonl or parquet)", format)
	}
	if path != "-" {
		switch strings.ToLower(filepath.Ext(path)) {
		case ".gz":
			return "", fmt.Errorf("%s: %w", path, errGzip)
		case ".csv":
			return FormatCSV, nil
		case ".jsonl", ".ndjson":
			return FormatJSONL, nil
		case ".parquet":
			return FormatParquet, nil
		}
	}
	switch {
	case format != "":
		return format, nil
	case path == "-":
		return "", errors.New("reading stdin (-) needs --format=csv, --format=jsonl or --format=parquet")
	}
	return "", fmt.Errorf("%s: unknown file type (want .csv, .jsonl, .ndjson or .parquet, or set --format)", path)
}

// isProfile reports whether path names a profile rather than data.
func isProfile(path string) bool { return strings.EqualFold(filepath.Ext(path), ".json") }

// readAll returns the contents of path ("-" is stdin) and its name for errors.
func readAll(env Env, path string) (name string, data []byte, err error) {
	if path == "-" {
		data, err = io.ReadAll(env.Stdin)
		if err != nil {
			return stdinName, nil, fmt.Errorf("%s: %w", stdinName, err)
		}
		return stdinName, data, nil
	}
	data, err = os.ReadFile(path)
	return path, data, err
}

// errGzip is the error of compressed data, which would otherwise fail as
// CSV or JSON with a bare quote or an invalid character on line 1.
var errGzip = errors.New("gzip-compressed data is not read: decompress it first, or pipe it in (gunzip -c FILE | exporter ... - --format csv)")

// parseData reads data in format, drift's readers' errors (file, line and
// column) passed through.
func parseData(name, format string, data []byte, opts drift.ReadOptions) ([]drift.Column, error) {
	if bytes.HasPrefix(data, []byte{0x1f, 0x8b}) {
		return nil, fmt.Errorf("%s: %w", name, errGzip)
	}
	switch format {
	case FormatJSONL:
		return drift.ReadJSONL(name, bytes.NewReader(data), opts)
	case FormatParquet:
		return parquetdata.Read(name, bytes.NewReader(data), int64(len(data)), opts)
	}
	return drift.ReadCSV(name, bytes.NewReader(data), opts)
}

// readData reads the data file path ("-" is stdin).
func readData(env Env, path, format string, opts drift.ReadOptions) (name string, cols []drift.Column, err error) {
	format, err = dataFormat(path, format)
	if err != nil {
		return "", nil, err
	}
	name, data, err := readAll(env, path)
	if err != nil {
		return name, nil, err
	}
	cols, err = parseData(name, format, data, opts)
	return name, cols, err
}

// writeOutput writes what write produces to path, "-" for stdout. A file is
// replaced whole or not at all, with statefile.WriteFile: write goes to
// path.tmp, flushed to the disk, then renamed over path, so that neither a
// failed write nor a crash soon after (a power cut) leaves path torn or
// empty.
func writeOutput(env Env, path string, write func(io.Writer) error) error {
	if path == "-" {
		return write(env.Stdout)
	}
	if err := statefile.WriteFile(path, write); err != nil {
		return fmt.Errorf("couldn't write %s: %w", path, err)
	}
	return nil
}
