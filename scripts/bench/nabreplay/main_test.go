package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// The harness runs on a few NAB series: both configurations page, the
// pipeline less falsely than the static rule. The full figures are in
// BENCHMARKS.md (make bench-nab-replay).
func TestNABReplay(t *testing.T) {
	const nab = "../../../../shared/bench/nab"
	if _, err := os.Stat(nab + "/data"); err != nil {
		t.Skipf("NAB data not found at %s (it ships beside the repository, not in it): %v", nab, err)
	}
	alertdBin = filepath.Join(t.TempDir(), "alertd")
	out, err := exec.Command("go", "build", "-o", alertdBin, "../../../cmd/alertd").CombinedOutput()
	require.NoError(t, err, string(out))
	res, err := run(context.Background(), nab+"/data", nab+"/labels/combined_windows.json", []string{
		"realAWSCloudwatch/ec2_cpu_utilization_825cc2.csv",
		"realAWSCloudwatch/ec2_disk_write_bytes_1ef3de.csv",
		"realAdExchange/exchange-3_cpc_results.csv",
	})
	require.NoError(t, err)
	require.Equal(t, 3, res.files)
	require.Equal(t, 5, res.static.Windows)
	require.Positive(t, res.static.Pages)
	require.Positive(t, res.piped.TP)
	require.Less(t, 5*res.piped.FP, res.static.FP, "static %+v, pipeline %+v", res.static, res.piped)
	require.GreaterOrEqual(t, res.piped.Detected, res.static.Detected)
}
