"""The guest's own controls of its CPU's identity instructions (issue 15): prctl(2)'s
PR_GET_TSC/PR_SET_TSC and arch_prctl(2)'s ARCH_GET_CPUID/ARCH_SET_CPUID, kept per
thread on the Task as Linux keeps them (sentry/vcpu.py reads them when the platform
traps an rdtsc or a cpuid). Called from syscalls/process.py's prctl and arch_prctl."""
import errno as E

from sentry import vcpu
from sentry.errors import Errno

PR_GET_TSC, PR_SET_TSC = 25, 26
PR_TSC_ENABLE, PR_TSC_SIGSEGV = 1, 2
ARCH_GET_CPUID, ARCH_SET_CPUID = 0x1011, 0x1012


def tsc_prctl(t, option: int, arg2: int) -> int:
    """PR_GET_TSC stores the mode at arg2; PR_SET_TSC sets it (EINVAL for another)."""
    if option == PR_GET_TSC:
        t.mm.write_u32(arg2, PR_TSC_SIGSEGV if getattr(t, "tsc_sigsegv", False) else PR_TSC_ENABLE)
        return 0
    if arg2 not in (PR_TSC_ENABLE, PR_TSC_SIGSEGV):
        raise Errno(E.EINVAL)
    t.tsc_sigsegv = arg2 == PR_TSC_SIGSEGV
    return 0


def cpuid_arch_prctl(t, code: int, arg: int) -> int:
    """ARCH_GET_CPUID answers 1 while cpuid runs, 0 while it faults; ARCH_SET_CPUID
    (arg 0: fault) needs CPUID faulting of the virtual CPU (ENODEV, as Linux without it)."""
    if code == ARCH_GET_CPUID:
        return 0 if getattr(t, "cpuid_faulting", False) else 1
    if not vcpu.of(t.kernel).cpuid_fault:
        raise Errno(E.ENODEV)
    t.cpuid_faulting = not arg
    return 0
