package dgram

import (
	"encoding/binary"
	"net"
	"net/netip"
	"strconv"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The raw system calls of the Loop. x/sys/unix's wrappers take a
// unix.Sockaddr interface and allocate on every call; these write and
// read the kernel's sockaddr structures in place, so that the packet path
// allocates nothing.

// sockaddr holds a struct sockaddr_in or sockaddr_in6.
type sockaddr [unix.SizeofSockaddrInet6]byte

// decode returns the address in sa, IPv4-mapped IPv6 addresses unmapped.
func (sa *sockaddr) decode() netip.AddrPort {
	port := binary.BigEndian.Uint16(sa[2:4])
	switch binary.NativeEndian.Uint16(sa[0:2]) {
	case unix.AF_INET:
		return netip.AddrPortFrom(netip.AddrFrom4([4]byte(sa[4:8])), port)
	case unix.AF_INET6:
		a := netip.AddrFrom16([16]byte(sa[8:24]))
		if a.Is4In6() {
			return netip.AddrPortFrom(a.Unmap(), port)
		}
		if scope := binary.NativeEndian.Uint32(sa[24:28]); scope != 0 {
			// Numeric zones are what net accepts back; rare (link-local
			// clients), so the allocation does not matter.
			a = a.WithZone(strconv.FormatUint(uint64(scope), 10))
		}
		return netip.AddrPortFrom(a, port)
	}
	return netip.AddrPort{}
}

// encode writes ap for a socket of the family v6 (AF_INET6: IPv4 as
// IPv4-mapped) or not (AF_INET) and returns the structure's length.
func (sa *sockaddr) encode(ap netip.AddrPort, v6 bool) (uintptr, error) {
	a := ap.Addr()
	if !v6 {
		a = a.Unmap()
		if !a.Is4() {
			return 0, &net.AddrError{Err: "not an IPv4 address", Addr: a.String()}
		}
		binary.NativeEndian.PutUint16(sa[0:2], unix.AF_INET)
		binary.BigEndian.PutUint16(sa[2:4], ap.Port())
		*(*[4]byte)(sa[4:8]) = a.As4()
		clear(sa[8:16])
		return unix.SizeofSockaddrInet4, nil
	}
	if !a.IsValid() {
		return 0, &net.AddrError{Err: "invalid address", Addr: a.String()}
	}
	binary.NativeEndian.PutUint16(sa[0:2], unix.AF_INET6)
	binary.BigEndian.PutUint16(sa[2:4], ap.Port())
	clear(sa[4:8])
	*(*[16]byte)(sa[8:24]) = a.As16()
	var scope uint32
	if z := a.Zone(); z != "" {
		if n, err := strconv.ParseUint(z, 10, 32); err == nil {
			scope = uint32(n)
		} else if ifi, err := net.InterfaceByName(z); err == nil {
			scope = uint32(ifi.Index)
		}
	}
	binary.NativeEndian.PutUint32(sa[24:28], scope)
	return unix.SizeofSockaddrInet6, nil
}

// sendto sends p to the address in sa. The socket is non-blocking: a
// full send buffer is EAGAIN.
func sendto(fd int, p []byte, sa *sockaddr, salen uintptr) error {
	var ptr unsafe.Pointer
	if len(p) > 0 {
		ptr = unsafe.Pointer(&p[0])
	}
	_, _, e := unix.Syscall6(unix.SYS_SENDTO, uintptr(fd), uintptr(ptr), uintptr(len(p)),
		0, uintptr(unsafe.Pointer(sa)), salen)
	if e != 0 {
		return e
	}
	return nil
}

// recvmmsg reads up to len(msgs) datagrams without waiting.
func recvmmsg(fd int, msgs []unix.Mmsghdr) (int, error) {
	n, _, e := unix.Syscall6(unix.SYS_RECVMMSG, uintptr(fd), uintptr(unsafe.Pointer(&msgs[0])),
		uintptr(len(msgs)), unix.MSG_DONTWAIT, 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}
