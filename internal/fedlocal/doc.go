// Package fedlocal is the contract between the federation endpoints that
// other servers query (federation/internal/fedapi) and the client side
// that holds the answers (signalling): our users' profiles, devices and
// keys, our room aliases and directory, OpenID tokens and media.
//
// It lives outside both so that neither imports the other: signalling
// implements Local, federation consumes it, and cmd wires the two. Only
// questions about this server's own users, aliases and media are asked
// through it; the federation side answers anything else itself.
package fedlocal
