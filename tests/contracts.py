"""The contracts (JSON Schemas) the tests check against: the copies shipped in the package."""

from __future__ import annotations

from stream.contracts import schema

__all__ = ["schema"]
