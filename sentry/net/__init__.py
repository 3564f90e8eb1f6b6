"""The sandbox's network objects. AF_UNIX sockets (unix.py) live wholly in the
sentry: socketpair, and bind/listen/connect/accept on abstract names and on
socket files of the sandbox's own VFS. No host socket is ever opened for them."""
