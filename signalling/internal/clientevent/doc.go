// Package clientevent turns stored PDUs into the event formats of the
// Client-Server API: the ClientEvent of timelines and state (Client-Server
// API, "Room Event Format" and "Client event format"), the stripped state
// of invites ("Stripped state"), with unsigned.age computed at delivery
// and redactions applied.
package clientevent
