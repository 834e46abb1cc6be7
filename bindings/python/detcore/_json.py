"""JSON for detcore: what `determined.util.json_encode` accepts (numpy scalars and arrays,
bytes, datetimes, enums, UUIDs, objects with __json__), with NaN/Infinity kept as the literals
detcore accepts (it sends them to the master as "NaN"/"Infinity" strings, as Python does)."""
import datetime
import enum
import json
import uuid
from typing import Any


def _default(obj: Any) -> Any:
    if hasattr(obj, "__json__"):
        return obj.__json__()
    if isinstance(obj, bytes):
        return obj.decode("utf-8")
    if isinstance(obj, (datetime.datetime, datetime.date)):
        return obj.isoformat()
    if isinstance(obj, enum.Enum):
        return obj.name
    if isinstance(obj, uuid.UUID):
        return str(obj)
    if hasattr(obj, "tolist") and callable(obj.tolist):  # numpy arrays
        return obj.tolist()
    if hasattr(obj, "item") and callable(obj.item):  # numpy scalars
        return obj.item()
    raise TypeError(f"Unserializable object {obj!r} of type {type(obj).__name__}")


def dumps(obj: Any) -> str:
    return json.dumps(obj, default=_default, allow_nan=True)


def loads(text: str) -> Any:
    return json.loads(text)
