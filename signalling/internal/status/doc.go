// Package status gathers the operator page's figures (issue 7): it asks
// each named Source (the SFU, the TURN relay, federation, and the
// client side's own rooms and calls) for its status on request, and
// samples the numbers at the top level of the sampled sources' statuses
// every interval into a ring per source, the history behind the page's
// simple charts. It knows nothing of what the sources are: their
// statuses are whatever JSON-encodable values they return.
package status
