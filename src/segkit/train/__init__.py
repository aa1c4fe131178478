"""``segkit train``: options, data, augmentation, loop, resume state, DDP and the run stage.

The package itself is callable, so ``segkit.train(dataset, output, ...)`` is the
stage function :func:`segkit.train.stage.train` while ``segkit.train.options`` etc.
stay importable sub-modules::

    import segkit
    summary = segkit.train("dataset", "runs/exp1", epochs=20, model="unet-small")
"""

from __future__ import annotations

import sys
import types
from typing import Any


class _CallablePackage(types.ModuleType):
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        from segkit.train.stage import train

        return train(*args, **kwargs)


sys.modules[__name__].__class__ = _CallablePackage
