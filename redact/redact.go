// Package redact hides credentials in values that are shown to people: in
// errors, log lines and the admin API. Configuration fields that hold secrets
// (passwords, tokens, keys) are never shown at all; this package is for the
// fields that are shown, such as server addresses, which a user may have
// written with credentials in them.
package redact

import "strings"

// Redacted stands for the hidden part of a value.
const Redacted = "REDACTED"

// Address returns s, a URL or host:port address as a user wrote it, with
// any userinfo (user:password@) replaced by REDACTED: "http://u:p@host/x"
// becomes "http://REDACTED@host/x", "u:p@host:80" becomes "REDACTED@host:80".
//
// It does not parse s, so it also hides credentials in addresses that no
// parser accepts; everything up to the last '@' after the scheme counts as
// userinfo, so a password holding '/', '?', '#' or '@' is hidden whole.
func Address(s string) string {
	at := strings.LastIndexByte(s, '@')
	if at < 0 {
		return s
	}
	start := 0
	if i := strings.Index(s, "://"); i >= 0 && i < at {
		start = i + len("://")
	}
	return s[:start] + Redacted + s[at:]
}
