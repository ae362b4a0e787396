package parquetdata

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/modelmon/modelmon/drift"
)

// FuzzParquet: any bytes give columns or an error naming the file, never a
// panic; the columns read build a profile or fail cleanly. The seeds are the
// Parquet files of testdata: parquet-testing's (nested lists and maps among
// them) and those testdata/*/main.go wrote with Arrow (FLOAT16 and TIME;
// lists, maps and structs in data pages v2).
func FuzzParquet(f *testing.F) {
	files, err := filepath.Glob("testdata/*.parquet")
	if err != nil {
		f.Fatal(err)
	}
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		cols, err := Read("x.parquet", bytes.NewReader(b), int64(len(b)), drift.ReadOptions{})
		if err != nil {
			if !bytes.HasPrefix([]byte(err.Error()), []byte("x.parquet")) {
				t.Fatalf("error without the file's name: %v", err)
			}
			return
		}
		_, _ = drift.BuildProfile(cols, drift.DefaultBuildOptions())
	})
}
