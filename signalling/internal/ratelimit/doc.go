// Package ratelimit is a keyed token-bucket limiter for the Client-Server
// API's rate-limited endpoints (login, registration, sending), which
// answer 429 M_LIMIT_EXCEEDED with retry_after_ms when a key runs dry
// (Client-Server API, "Rate limiting").
package ratelimit
