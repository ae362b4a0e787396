//go:build !race

package alertd

const raceEnabled = false
