//go:build integration && race

package integration

// raceEnabled is true when the tests are built with -race.
const raceEnabled = true
