"""Landlock through ctypes: read-only access to the interpreter's libraries, nothing else.

The ruleset is created once in the forking parent (it needs the paths opened)
and each worker enforces it with one ``landlock_restrict_self`` call after the
fork. From ABI 4 the same ruleset also denies TCP bind/connect, and from ABI 6
it scopes signals and abstract unix sockets to the worker itself.
"""

from __future__ import annotations

import ctypes
import os
import struct

# Same numbers on x86_64 and aarch64 (the generic table).
_SYS_CREATE_RULESET = 444
_SYS_ADD_RULE = 445
_SYS_RESTRICT_SELF = 446
_CREATE_RULESET_VERSION = 1
_RULE_PATH_BENEATH = 1

# linux/landlock.h access rights, by the ABI that introduced them.
_FS_ABI1 = (1 << 13) - 1  # EXECUTE .. MAKE_SYM
_FS_REFER = 1 << 13  # ABI 2
_FS_TRUNCATE = 1 << 14  # ABI 3
_FS_IOCTL_DEV = 1 << 15  # ABI 5
_FS_READ = (1 << 2) | (1 << 3)  # READ_FILE | READ_DIR
_NET_ALL = (1 << 0) | (1 << 1)  # BIND_TCP | CONNECT_TCP, ABI 4
_SCOPE_ALL = (1 << 0) | (1 << 1)  # ABSTRACT_UNIX_SOCKET | SIGNAL, ABI 6

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


def abi_version() -> int:
    """The kernel's Landlock ABI version; 0 when Landlock is absent or disabled."""
    v = _libc.syscall(_SYS_CREATE_RULESET, None, ctypes.c_size_t(0), ctypes.c_uint32(_CREATE_RULESET_VERSION))
    return int(v) if v > 0 else 0


def _handled_fs(abi: int) -> int:
    rights = _FS_ABI1
    if abi >= 2:
        rights |= _FS_REFER
    if abi >= 3:
        rights |= _FS_TRUNCATE
    if abi >= 5:
        rights |= _FS_IOCTL_DEV
    return rights


def create_ruleset(read_paths: list[str]) -> tuple[int, int]:
    """A ruleset fd allowing only reads beneath ``read_paths``; returns (fd, abi).

    Everything Landlock can handle at this ABI is handled, so anything not
    granted here (writes anywhere, reads elsewhere, TCP) is denied.
    """
    abi = abi_version()
    if abi < 1:
        raise OSError("Landlock is not available in this kernel")
    attr = struct.pack("Q", _handled_fs(abi))
    if abi >= 4:
        attr += struct.pack("Q", _NET_ALL)
    if abi >= 6:
        attr += struct.pack("Q", _SCOPE_ALL)
    buf = ctypes.create_string_buffer(attr, len(attr))
    fd = _libc.syscall(_SYS_CREATE_RULESET, buf, ctypes.c_size_t(len(attr)), ctypes.c_uint32(0))
    if fd < 0:
        raise OSError(ctypes.get_errno(), "landlock_create_ruleset failed")
    for path in read_paths:
        try:
            pfd = os.open(path, os.O_PATH | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            # A rule on a regular file may only carry file rights.
            rights = _FS_READ if os.path.isdir(path) else (1 << 2)
            rule = ctypes.create_string_buffer(struct.pack("=Qi", rights, pfd), 12)
            if _libc.syscall(_SYS_ADD_RULE, ctypes.c_int(fd), ctypes.c_int(_RULE_PATH_BENEATH), rule, ctypes.c_uint32(0)) != 0:
                err = ctypes.get_errno()
                os.close(fd)
                raise OSError(err, f"landlock_add_rule failed for {path}")
        finally:
            os.close(pfd)
    return int(fd), abi


def restrict_self(ruleset_fd: int) -> None:
    """Enforce the ruleset on the calling process; needs no_new_privs set first."""
    if _libc.syscall(_SYS_RESTRICT_SELF, ctypes.c_int(ruleset_fd), ctypes.c_uint32(0)) != 0:
        raise OSError(ctypes.get_errno(), "landlock_restrict_self failed")
