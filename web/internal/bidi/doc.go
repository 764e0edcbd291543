// Package bidi is a small WebDriver BiDi client for the web client's
// browser tests: it starts a headless Firefox (which speaks BiDi itself,
// no geckodriver) with a fresh profile, and drives tabs by the commands
// the tests need: browsing contexts in separate user contexts, navigation,
// script evaluation with the result decoded to Go values, input actions,
// viewport size and screenshots; console messages arrive as log events.
//
// It follows the W3C WebDriver BiDi specification: one WebSocket carries
// commands ({id, method, params}), their replies ({type: "success" or
// "error", id, ...}) and events ({type: "event", method, params}).
//
// It is test support, not part of the server: only _test.go files import it.
package bidi
