//go:build race

package nameservice

const raceEnabled = true
