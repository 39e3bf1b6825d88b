"""Base class for every typed config: unknown keys are errors, values are validated on assignment."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from tongues.errors import ConfigError
from tongues.languages import get_language


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=())


def check_language(code: str) -> str:
    """Pydantic validator body: accept a known language code, else explain which ones are known."""
    try:
        get_language(code)
    except ConfigError as err:
        raise ValueError(str(err)) from None
    return code
