"""A seccomp BPF filter built with ``struct`` and loaded with ``prctl``.

No libseccomp: the filter is a short list of BPF instructions, so it is built in
pure Python (tens of microseconds) and installed in each worker right after the
fork. It is a deny list on top of Landlock and rlimits: it takes away the kernel
interfaces a transform never needs (sockets, new processes or threads, exec,
signals to other processes, tracing, mounts, io_uring, every way of creating,
changing or deleting a file, and opening a file for writing), SysV IPC and
message queues, new sessions, and the calls by which a process would stop
dying with its parent or have the kernel signal another process for it
(``prctl(PR_SET_PDEATHSIG)``, ``fcntl(F_SETOWN/F_SETSIG)``, ``FIOSETOWN``).
"""

from __future__ import annotations

import ctypes
import errno
import platform
import struct

# BPF opcodes (linux/filter.h) and seccomp return values (linux/seccomp.h).
_LD_W_ABS = 0x20
_JEQ_K = 0x15
_JGE_K = 0x35
_JSET_K = 0x45
_RET_K = 0x06
_RET_ALLOW = 0x7FFF0000
_RET_ERRNO = 0x00050000
_RET_KILL_PROCESS = 0x80000000

_PR_SET_NO_NEW_PRIVS = 38
_PR_SET_SECCOMP = 22
_SECCOMP_MODE_FILTER = 2

# Flags that make open() create, truncate or write; O_TMPFILE's own bit included.
_WRITE_FLAGS = 0o1 | 0o2 | 0o100 | 0o1000 | 0o2000 | 0o20000000

_COMMON_DENY = (
    "socket socketpair connect bind listen accept accept4 sendto sendmsg sendmmsg "
    "clone execve execveat rt_sigqueueinfo rt_tgsigqueueinfo ptrace "
    "mount umount2 pivot_root chroot move_mount open_tree fsopen fsmount fspick mount_setattr "
    "mkdirat mknodat unlinkat symlinkat linkat renameat renameat2 truncate fchmod fchmodat fchmodat2 "
    "fchownat fchown utimensat setxattr lsetxattr fsetxattr removexattr lremovexattr fremovexattr "
    "unshare setns memfd_create bpf perf_event_open userfaultfd process_vm_readv process_vm_writev "
    "pidfd_open pidfd_send_signal pidfd_getfd io_uring_setup io_uring_enter io_uring_register "
    "keyctl add_key request_key init_module finit_module delete_module kexec_load kexec_file_load "
    "reboot swapon swapoff sethostname setdomainname name_to_handle_at open_by_handle_at fanotify_init "
    "acct quotactl process_madvise "
    # SysV IPC and POSIX message queues: a segment or queue outlives the
    # process and pins host memory (bubblewrap's ipc namespace is not always there).
    "shmget shmat shmctl shmdt semget semop semtimedop semctl msgget msgsnd msgrcv msgctl "
    "mq_open mq_unlink mq_timedsend mq_timedreceive mq_notify mq_getsetattr "
    # A new session or process group would escape the host's kill of the group.
    "setsid setpgid syslog"
).split()

# Arguments denied for calls that are otherwise needed.
_PRCTL_DENY = (
    1,  # PR_SET_PDEATHSIG: keep dying with the parent
    4,  # PR_SET_DUMPABLE: stay closed to other processes of the uid
    35,  # PR_SET_MM
    36,  # PR_SET_CHILD_SUBREAPER
    0x59616D61,  # PR_SET_PTRACER
)
# Owners of SIGIO/SIGURG and lease or dnotify signals: with one, a program could
# have the kernel signal any process of its uid (another worker) for it.
_FCNTL_DENY = (8, 10, 15, 1024, 1026)  # F_SETOWN F_SETSIG F_SETOWN_EX F_SETLEASE F_NOTIFY
_IOCTL_DENY = (0x8901, 0x8902, 0x5452)  # FIOSETOWN SIOCSPGRP FIOASYNC

# Per architecture: AUDIT_ARCH value, syscall numbers, the calls that only exist there.
_ARCH = {
    "x86_64": {
        "audit": 0xC000003E,
        "extra_deny": "fork vfork creat mkdir mknod rmdir unlink link symlink rename chmod chown lchown utime utimes futimesat".split(),
        "nr": {
            "socket": 41, "socketpair": 53, "connect": 42, "bind": 49, "listen": 50, "accept": 43, "accept4": 288,
            "sendto": 44, "sendmsg": 46, "sendmmsg": 307, "clone": 56, "fork": 57, "vfork": 58, "execve": 59,
            "execveat": 322, "clone3": 435, "kill": 62, "tkill": 200, "tgkill": 234, "rt_sigqueueinfo": 129,
            "rt_tgsigqueueinfo": 297, "ptrace": 101, "mount": 165, "umount2": 166, "pivot_root": 155, "chroot": 161,
            "open": 2, "openat": 257, "openat2": 437, "creat": 85, "mkdir": 83, "mkdirat": 258, "mknod": 133,
            "mknodat": 259, "rmdir": 84, "unlink": 87, "unlinkat": 263, "link": 86, "linkat": 265, "symlink": 88,
            "symlinkat": 266, "rename": 82, "renameat": 264, "renameat2": 316, "truncate": 76, "chmod": 90,
            "fchmod": 91, "fchmodat": 268, "fchmodat2": 452, "chown": 92, "fchown": 93, "lchown": 94, "fchownat": 260,
            "utime": 132, "utimes": 235, "futimesat": 261, "utimensat": 280, "setxattr": 188, "lsetxattr": 189,
            "fsetxattr": 190, "removexattr": 197, "lremovexattr": 198, "fremovexattr": 199, "unshare": 272,
            "setns": 308, "memfd_create": 319, "bpf": 321, "perf_event_open": 298, "userfaultfd": 323,
            "process_vm_readv": 310, "process_vm_writev": 311, "pidfd_open": 434, "pidfd_send_signal": 424,
            "pidfd_getfd": 438, "io_uring_setup": 425, "io_uring_enter": 426, "io_uring_register": 427,
            "keyctl": 250, "add_key": 248, "request_key": 249, "init_module": 175, "finit_module": 313,
            "delete_module": 176, "kexec_load": 246, "kexec_file_load": 320, "reboot": 169, "swapon": 167,
            "swapoff": 168, "sethostname": 170, "setdomainname": 171, "name_to_handle_at": 303,
            "open_by_handle_at": 304, "fanotify_init": 300, "acct": 163, "quotactl": 179, "move_mount": 429,
            "open_tree": 428, "fsopen": 430, "fsmount": 432, "fspick": 433, "mount_setattr": 442,
            "process_madvise": 440, "shmget": 29, "shmat": 30, "shmctl": 31, "shmdt": 67, "semget": 64,
            "semop": 65, "semtimedop": 220, "semctl": 66, "msgget": 68, "msgsnd": 69, "msgrcv": 70, "msgctl": 71,
            "mq_open": 240, "mq_unlink": 241, "mq_timedsend": 242, "mq_timedreceive": 243, "mq_notify": 244,
            "mq_getsetattr": 245, "setsid": 112, "setpgid": 109, "syslog": 103, "prctl": 157, "fcntl": 72,
            "ioctl": 16,
        },
    },
    "aarch64": {
        "audit": 0xC00000B7,
        "extra_deny": [],
        "nr": {
            "socket": 198, "socketpair": 199, "connect": 203, "bind": 200, "listen": 201, "accept": 202,
            "accept4": 242, "sendto": 206, "sendmsg": 211, "sendmmsg": 269, "clone": 220, "execve": 221,
            "execveat": 281, "clone3": 435, "kill": 129, "tkill": 130, "tgkill": 131, "rt_sigqueueinfo": 138,
            "rt_tgsigqueueinfo": 240, "ptrace": 117, "mount": 40, "umount2": 39, "pivot_root": 41, "chroot": 51,
            "openat": 56, "openat2": 437, "mkdirat": 34, "mknodat": 33, "unlinkat": 35, "linkat": 37,
            "symlinkat": 36, "renameat": 38, "renameat2": 276, "truncate": 45, "fchmod": 52, "fchmodat": 53,
            "fchmodat2": 452, "fchown": 55, "fchownat": 54, "utimensat": 88, "setxattr": 5, "lsetxattr": 6,
            "fsetxattr": 7, "removexattr": 14, "lremovexattr": 15, "fremovexattr": 16, "unshare": 97, "setns": 268,
            "memfd_create": 279, "bpf": 280, "perf_event_open": 241, "userfaultfd": 282, "process_vm_readv": 270,
            "process_vm_writev": 271, "pidfd_open": 434, "pidfd_send_signal": 424, "pidfd_getfd": 438,
            "io_uring_setup": 425, "io_uring_enter": 426, "io_uring_register": 427, "keyctl": 219, "add_key": 217,
            "request_key": 218, "init_module": 105, "finit_module": 273, "delete_module": 106, "kexec_load": 104,
            "kexec_file_load": 294, "reboot": 142, "swapon": 224, "swapoff": 225, "sethostname": 161,
            "setdomainname": 162, "name_to_handle_at": 264, "open_by_handle_at": 265, "fanotify_init": 262,
            "acct": 89, "quotactl": 60, "move_mount": 429, "open_tree": 428, "fsopen": 430, "fsmount": 432,
            "fspick": 433, "mount_setattr": 442, "process_madvise": 440, "shmget": 194, "shmat": 196,
            "shmctl": 195, "shmdt": 197, "semget": 190, "semop": 193, "semtimedop": 192, "semctl": 191,
            "msgget": 186, "msgsnd": 189, "msgrcv": 188, "msgctl": 187, "mq_open": 180, "mq_unlink": 181,
            "mq_timedsend": 182, "mq_timedreceive": 183, "mq_notify": 184, "mq_getsetattr": 185, "setsid": 157,
            "setpgid": 154, "syslog": 116, "prctl": 167, "fcntl": 25, "ioctl": 29,
        },
    },
}


def supported_arch() -> str | None:
    """The machine name when this module knows its syscall numbers, else None."""
    m = platform.machine()
    return m if m in _ARCH else None


def _ins(code: int, k: int, jt: int = 0, jf: int = 0) -> bytes:
    return struct.pack("HBBI", code, jt, jf, k & 0xFFFFFFFF)


def build_filter(own_pid: int) -> bytes:
    """The BPF program for a worker whose pid (as it sees itself) is ``own_pid``.

    Signals are allowed only to ``own_pid``: a program may kill itself, which
    costs one candidate, but never its parent or another worker.
    """
    arch = _ARCH[platform.machine()]
    nr = arch["nr"]
    eperm = _RET_ERRNO | errno.EPERM
    eacces = _RET_ERRNO | errno.EACCES
    # ENOSYS, not EPERM: glibc then falls back to clone()/openat(), which the
    # filter judges on their arguments.
    enosys = _RET_ERRNO | errno.ENOSYS

    prog: list[bytes] = [
        _ins(_LD_W_ABS, 4),  # seccomp_data.arch
        _ins(_JEQ_K, arch["audit"], 1, 0),
        _ins(_RET_K, _RET_KILL_PROCESS),
        _ins(_LD_W_ABS, 0),  # seccomp_data.nr
    ]
    if platform.machine() == "x86_64":
        # The x32 ABI reuses the table with bit 30 set; nothing here needs it.
        prog += [_ins(_JGE_K, 0x40000000, 0, 1), _ins(_RET_K, eperm)]

    def deny(num: int, ret: int) -> None:
        prog.extend([_ins(_JEQ_K, num, 0, 1), _ins(_RET_K, ret)])

    for name in _COMMON_DENY + arch["extra_deny"]:
        deny(nr[name], eperm)
    deny(nr["clone3"], enosys)
    deny(nr["openat2"], enosys)

    def arg_check(num: int, arg: int, tail: list[bytes]) -> None:
        # if nr == num: load the low word of the argument and run ``tail``,
        # which always returns; otherwise skip it with the nr still loaded.
        body = [_ins(_LD_W_ABS, 16 + 8 * arg)] + tail
        prog.append(_ins(_JEQ_K, num, 0, len(body)))
        prog.extend(body)

    open_tail = [_ins(_JSET_K, _WRITE_FLAGS, 0, 1), _ins(_RET_K, eacces), _ins(_RET_K, _RET_ALLOW)]
    if "open" in nr:
        arg_check(nr["open"], 1, open_tail)
    arg_check(nr["openat"], 2, open_tail)
    # kill(pid), tkill(tid), tgkill(tgid, ...): first argument must be our pid;
    # the high word is checked too so a negative pid (a process group) cannot slip by.
    self_only = [
        _ins(_JEQ_K, own_pid, 0, 3),
        _ins(_LD_W_ABS, 16 + 4),
        _ins(_JEQ_K, 0, 0, 1),
        _ins(_RET_K, _RET_ALLOW),
        _ins(_RET_K, eperm),
    ]
    for name in ("kill", "tkill", "tgkill"):
        arg_check(nr[name], 0, self_only)

    def deny_values(values: tuple[int, ...]) -> list[bytes]:
        # Each match jumps over the remaining tests and the ALLOW to the EPERM.
        tail = [_ins(_JEQ_K, v, len(values) - k, 0) for k, v in enumerate(values)]
        return tail + [_ins(_RET_K, _RET_ALLOW), _ins(_RET_K, eperm)]

    # The option, command or request is 32 bits wide in the kernel: the low word is all of it.
    arg_check(nr["prctl"], 0, deny_values(_PRCTL_DENY))
    arg_check(nr["fcntl"], 1, deny_values(_FCNTL_DENY))
    arg_check(nr["ioctl"], 1, deny_values(_IOCTL_DENY))
    prog.append(_ins(_RET_K, _RET_ALLOW))
    return b"".join(prog)


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


_libc = ctypes.CDLL(None, use_errno=True)


def set_no_new_privs() -> None:
    if _libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS) failed")


class Prepared:
    """The filter built once in a forking parent; each child fills in its own pid and loads it.

    Building the program in Python costs ~0.4 ms, most of it in copy-on-write
    faults when done in a fresh child; writing three pids into a ready buffer
    costs nothing.
    """

    _SENTINEL = 0x7FFFFFF3  # no pid is this large (pid_max is at most 2**22)

    def __init__(self) -> None:
        code = build_filter(self._SENTINEL)
        self._buf = ctypes.create_string_buffer(code, len(code))
        self._prog = _SockFprog(len(code) // 8, ctypes.cast(self._buf, ctypes.c_void_p))
        self._offsets = [i + 4 for i in range(0, len(code), 8) if struct.unpack_from("<I", code, i + 4)[0] == self._SENTINEL]
        if not self._offsets:
            raise AssertionError("the seccomp template lost its pid checks")

    def install(self, own_pid: int) -> None:
        for off in self._offsets:
            struct.pack_into("<I", self._buf, off, own_pid)
        set_no_new_privs()
        if _libc.prctl(_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, ctypes.byref(self._prog), 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_SECCOMP) failed")


def install(own_pid: int) -> None:
    """Load the filter into the calling process (irreversible)."""
    code = build_filter(own_pid)
    buf = ctypes.create_string_buffer(code, len(code))
    prog = _SockFprog(len(code) // 8, ctypes.cast(buf, ctypes.c_void_p))
    set_no_new_privs()
    if _libc.prctl(_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, ctypes.byref(prog), 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_SECCOMP) failed")
