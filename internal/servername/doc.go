// Package servername checks Matrix server names (appendices, "Server
// Name") and the host and port parts they are made of.
package servername
