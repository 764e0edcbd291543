// Package turncred mints and checks TURN REST ephemeral credentials
// (draft-uberti-behave-turn-rest-00, "A REST API For Access To TURN
// Services", section 2.2), the scheme that /voip/turnServer hands out and
// that the embedded TURN relay, coturn's --use-auth-secret and most other
// TURN servers accept.
//
// The username is "<expiry>:<user_id>", expiry being a Unix time in seconds;
// the password is base64(HMAC-SHA1(secret, username)). The server needs no
// per-user state: it recomputes the password from the username and refuses
// the username once its expiry has passed.
//
// The functions are pure (the clock is a parameter) so that the signalling
// package and the relay share one definition and tests need no real time.
package turncred
