"""The syscall filter of every probe process: a deny list of what a probe never needs (kernel modules,
mounts, keyrings, bpf, ptrace, namespaces, clock, reboot, io_uring, ...), compiled to classic BPF by
libseccomp (Debian's libseccomp2, through ctypes) for bubblewrap's `--seccomp FD`.

A denied call fails with EPERM, or ENOSYS where programs probe for a feature and fall back (clone3,
io_uring, the new mount API). Every other call is allowed: an allow list would break the PostgreSQL
binaries and restored programs a drill must run. A call of another ABI than the native one (i386 or
x32 on x86_64, arm32 on aarch64) kills the process: the deny list names native syscall numbers only.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import functools
import os

from backupd.errors import DependencyError

ALLOW = 0x7FFF0000
KILL_PROCESS = 0x80000000
_ATTR_BADARCH = 2
_CMP_MASKED_EQ = 7
_RESOLVE_ERROR = -1  # __NR_SCMP_ERROR: no such syscall on this architecture

#: Denied with EPERM: what a probe (a restored program, a probe command, PostgreSQL) never needs.
EPERM = (
    "mount", "umount", "umount2", "pivot_root", "chroot", "mount_setattr", "move_mount", "open_tree",
    "keyctl", "add_key", "request_key", "bpf", "perf_event_open", "userfaultfd",
    "ptrace", "process_vm_readv", "process_vm_writev", "kcmp", "pidfd_getfd",
    "init_module", "finit_module", "delete_module", "create_module", "kexec_load", "kexec_file_load",
    "clock_settime", "clock_adjtime", "settimeofday", "adjtimex", "stime",
    "swapon", "swapoff", "reboot", "acct", "quotactl", "quotactl_fd",
    "open_by_handle_at", "name_to_handle_at", "lookup_dcookie", "fanotify_init", "nfsservctl",
    "iopl", "ioperm", "syslog", "setns", "vhangup", "uselib", "_sysctl",
)
#: Denied with ENOSYS: features a program may probe for and then do without.
ENOSYS = ("clone3", "io_uring_setup", "io_uring_enter", "io_uring_register",
          "fsopen", "fsconfig", "fsmount", "fspick")
#: clone/unshare flags that make a namespace (CLONE_NEWNS ... CLONE_NEWNET, CLONE_NEWTIME).
NAMESPACE_FLAGS = (0x00020000, 0x02000000, 0x04000000, 0x08000000, 0x10000000, 0x20000000,
                   0x40000000, 0x00000080)


class _Cmp(ctypes.Structure):
    _fields_ = [("arg", ctypes.c_uint), ("op", ctypes.c_int), ("datum_a", ctypes.c_uint64),
                ("datum_b", ctypes.c_uint64)]


def _errno_action(number: int) -> int:
    return 0x00050000 | (number & 0xFFFF)  # SCMP_ACT_ERRNO


def _library() -> ctypes.CDLL:
    name = ctypes.util.find_library("seccomp") or "libseccomp.so.2"
    try:
        lib = ctypes.CDLL(name, use_errno=True)
    except OSError as exc:
        raise DependencyError("libseccomp not found: probes run only under a syscall filter; install the "
                              "Debian package libseccomp2 (scripts/setup.sh does)") from exc
    lib.seccomp_init.restype = ctypes.c_void_p
    lib.seccomp_init.argtypes = [ctypes.c_uint32]
    lib.seccomp_release.argtypes = [ctypes.c_void_p]
    lib.seccomp_attr_set.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_uint32]
    lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    lib.seccomp_rule_add_array.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int, ctypes.c_uint,
                                           ctypes.POINTER(_Cmp)]
    lib.seccomp_export_bpf.argtypes = [ctypes.c_void_p, ctypes.c_int]
    return lib


def _add(lib, ctx, action: int, name: str, *cmps: _Cmp) -> None:
    number = lib.seccomp_syscall_resolve_name(name.encode())
    if number == _RESOLVE_ERROR:
        return  # not a syscall of this architecture (iopl on aarch64, ...)
    array = (_Cmp * len(cmps))(*cmps) if cmps else None
    rc = lib.seccomp_rule_add_array(ctx, action, number, len(cmps), array)
    if rc < 0:
        raise DependencyError(f"libseccomp refused the rule for {name}: {os.strerror(-rc)}")


@functools.cache
def program() -> bytes:
    """The filter as classic BPF (struct sock_filter array), as bwrap --seccomp reads it."""
    lib = _library()
    ctx = lib.seccomp_init(ALLOW)
    if not ctx:
        raise DependencyError("libseccomp could not make a filter for this architecture")
    try:
        lib.seccomp_attr_set(ctx, _ATTR_BADARCH, KILL_PROCESS)
        for name in EPERM:
            _add(lib, ctx, _errno_action(errno.EPERM), name)
        for name in ENOSYS:
            _add(lib, ctx, _errno_action(errno.ENOSYS), name)
        # namespaces: a flag set in clone's or unshare's flags (the first argument; clone's second on
        # s390x, whose clone is then left to the missing capabilities) is refused
        calls = ("unshare",) if os.uname().machine.startswith("s390") else ("clone", "unshare")
        for flag in NAMESPACE_FLAGS:
            for name in calls:
                _add(lib, ctx, _errno_action(errno.EPERM), name, _Cmp(0, _CMP_MASKED_EQ, flag, flag))
        return _export(lib, ctx)
    finally:
        lib.seccomp_release(ctx)


def _export(lib, ctx) -> bytes:
    fd = os.memfd_create("backupd-seccomp")
    try:
        rc = lib.seccomp_export_bpf(ctx, fd)
        if rc < 0:
            raise DependencyError(f"libseccomp could not export the filter: {os.strerror(-rc)}")
        os.lseek(fd, 0, os.SEEK_SET)
        return _read_all(fd)
    finally:
        os.close(fd)


def _read_all(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, 1 << 16):
        chunks.append(chunk)
    return b"".join(chunks)


def filter_fd() -> int:
    """A fresh, inheritable file descriptor holding the filter, positioned at its start (bwrap reads it
    to its end and closes it). The caller closes its own copy after the spawn."""
    fd = os.memfd_create("backupd-probe-seccomp", 0)
    try:
        os.write(fd, program())
        os.lseek(fd, 0, os.SEEK_SET)
    except BaseException:
        os.close(fd)
        raise
    return fd
