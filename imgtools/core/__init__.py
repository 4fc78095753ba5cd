"""Image -> ELF core: ``notes`` packs the note structs, ``elf`` lays out and writes the file.

Works from the version-independent model plus the image file (for page data,
FPU areas and the command line), so every supported version gives the same core
for the same process.
"""
from __future__ import annotations

from .elf import (CorePlan, Segment, UnsupportedImage, check_arch, plan_core, processes,
                  select_process, write_core)

__all__ = ["CorePlan", "Segment", "UnsupportedImage", "check_arch", "plan_core", "processes",
           "select_process", "write_core"]
