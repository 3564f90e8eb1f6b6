"""Sockets: not built yet (the network issue). Until then a program is told
plainly that there is no such address family."""
import errno as E

from syscalls.registry import refuse

refuse("socket", E.EAFNOSUPPORT, "no sockets yet: every address family is unsupported")
refuse("socketpair", E.EAFNOSUPPORT, "no sockets yet")
