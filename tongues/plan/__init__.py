"""Planning: scaling laws, the planner, model shapes, memory, FLOPs, hardware, law fitting.

Pure math: nothing here trains or runs a model (the scaling sweep, which trains runs, is in
`tongues.lm.sweep`). `tongues.plan` is both this package and the public function
``tongues.plan(flops=..., ...)``: the package is callable and calls `tongues.plan.planner.plan`,
so the name means the same thing whichever was imported first.
"""

from __future__ import annotations

import sys
import types
from typing import Any


class _CallablePackage(types.ModuleType):
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        from tongues.plan.planner import plan

        return plan(*args, **kwargs)


sys.modules[__name__].__class__ = _CallablePackage
