"""From an executable file to a plan of the initial process image.

    parse_elf(bytes) -> ElfInfo                    elf.py (lief, behind a cache: cache.py)
    plan_image(ElfInfo, bytes, ...) -> ImagePlan   plan.py (load biases, mappings, stack, auxv)

Pure: the loader is given file bytes and returns data. It never touches a
process, an emulator or the host filesystem (the ELF cache aside); the
caller resolves PT_INTERP in the sandbox's filesystem and the MemoryManager
carries the plan out.
"""

from loader.elf import ElfInfo, Segment, parse_elf
from loader.errors import LoadError
from loader.plan import LAYOUTS, ImagePlan, Layout, Mapping, plan_image

__all__ = ["LoadError", "ElfInfo", "Segment", "parse_elf", "plan_image", "ImagePlan", "Mapping",
           "Layout", "LAYOUTS"]
