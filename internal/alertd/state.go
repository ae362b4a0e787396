package alertd

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/modelmon/modelmon/internal/statefile"
)

// writeJSON writes v as JSON to path, for the state alertd keeps under
// --storage.path: atomically and durably (statefile.WriteFile), so a failed
// write or a crash, a power cut included, leaves the last whole file.
func writeJSON(path string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return statefile.WriteFile(path, func(w io.Writer) error {
		_, err := w.Write(b)
		return err
	})
}

// readJSON reads path into v. A missing file is not an error: it reports
// false and leaves v as it is.
func readJSON(path string, v any) (bool, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return false, fmt.Errorf("%s: %w", path, err)
	}
	return true, nil
}
