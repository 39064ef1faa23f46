"""Blocking session stores, one per storage engine; each implements ``protocol.Store``."""

from __future__ import annotations

from .sqlite import SQLiteStore

__all__ = ("SQLiteStore",)
