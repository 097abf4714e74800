package vaulttest

import (
	"crypto/rand"
	"encoding/hex"
)

// base62 is the alphabet of Vault's random identifiers: lease ids, token
// ids and accessors, and the random part of generated usernames.
const base62 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

// randomString returns n characters drawn uniformly from base62 with
// crypto/rand.
func randomString(n int) string {
	out := make([]byte, 0, n)
	buf := make([]byte, 2*n)
	for len(out) < n {
		rand.Read(buf) // never fails on supported platforms
		for _, b := range buf {
			// 248 = 4*62: rejecting bytes above it keeps the draw uniform.
			if b < 248 && len(out) < n {
				out = append(out, base62[int(b)%62])
			}
		}
	}
	return string(out)
}

// newPassword returns a password in the shape of Vault's default password
// policy: 20 characters, starting "A1a-" so that every character class a
// PostgreSQL password policy may ask for is present.
func newPassword() string { return "A1a-" + randomString(16) }

// newToken returns a service token id in Vault's format ("hvs." and random
// characters).
func newToken() string { return "hvs." + randomString(24) }

// newUUID returns a random (version 4) UUID, for request ids and role ids.
func newUUID() string {
	var b [16]byte
	rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}
