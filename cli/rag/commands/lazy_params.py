"""typer converts a value through pydantic only when the value needs converting.

typer 0.29 converts every parameter through a pydantic TypeAdapter that it builds when the parameter is
first processed, even when the value is absent (None, which it returns as None before converting) or is
already a ``str`` or ``bool`` as the parameter wants (its adapter returns the very same object). Importing
pydantic and building those adapters cost ~0.3 s of CPU in every command: a sixth of a cold
``rag query``. :func:`install` defers the adapter to the first value that needs it (a number, a path, a
choice, a list); that value gets typer's own adapter, so its errors are typer's own. Checked by
tests/test_cold_start.py (no pydantic in a cold ``rag query``) and tests/test_cli_usage.py (the errors).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from typer import core
from typer._coercion import RuntimeParam, TypeDescriptor, build_runtime_param

if TYPE_CHECKING:
    from typer._click import Context
    from typer.core import _TyperParameter


@dataclass(frozen=True)
class _Deferred(RuntimeParam):
    """typer's conversion for one parameter, built on the first value that is not already of its type (str, bool)."""

    descriptor: TypeDescriptor

    def _coerce_value(self, value: Any, param: _TyperParameter, ctx: Context) -> Any:
        kind = self.descriptor.annotation
        if self.parameter_info.parser is None and kind in (str, bool) and type(value) is kind:
            return value  # what typer's adapter returns for it: the value itself
        return build_runtime_param(self.descriptor)._coerce_value(value, param=param, ctx=ctx)


def _deferred(descriptor: TypeDescriptor) -> RuntimeParam:
    if descriptor.file_annotation is not None:  # typer opens files without pydantic
        return build_runtime_param(descriptor)
    return _Deferred(parameter_info=descriptor.parameter_info, annotation=descriptor.annotation, descriptor=descriptor)


def install() -> None:
    if not callable(getattr(core, "build_runtime_param", None)):
        raise AttributeError("typer.core.build_runtime_param")  # not the typer this was written for: leave it be
    core.build_runtime_param = _deferred
