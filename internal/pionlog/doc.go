// Package pionlog feeds pion's logging interface into log/slog and keeps
// hot-path log lines from flooding the log.
//
// pion logs per packet at debug and info levels ("No Permission or Channel
// exists for ..."): a peer spraying a relay port would turn each datagram
// into a log line. Factory maps pion's info to slog's debug and passes every
// line through a Limiter, which lets a few lines a second through per
// message format and reports how many it held back.
package pionlog
