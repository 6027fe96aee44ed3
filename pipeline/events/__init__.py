"""The versioned event contract (``contract``), its JSON Schemas (``schema``) and thumbnails."""

from pipeline.events.contract import *  # noqa: F403
from pipeline.events.contract import CONTENT_TYPE, EVENT_TYPES  # noqa: F401
from pipeline.events.contract import __all__ as _contract_all

__all__ = list(_contract_all)
