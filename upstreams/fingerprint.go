package upstreams

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
)

// fingerprintKey makes fingerprints unguessable from outside the process,
// so that a secret hashed into one cannot be brute-forced from a pool key
// or anything else that shows it.
var fingerprintKey = func() []byte {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return b
}()

// Fingerprint identifies a connection by what it connects to and as
// (addresses, TLS settings, credentials, timings), without holding any of
// it: a keyed HMAC-SHA256 of the parts, each ended by a NUL byte. Equal
// fingerprints share one pooled client; secrets may be among the parts.
func Fingerprint(parts ...string) string {
	h := hmac.New(sha256.New, fingerprintKey)
	for _, p := range parts {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil))
}
