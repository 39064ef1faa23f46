"""Settings for the chat example: only what a JSON API with session memory needs.

The agentsession part is ``AGENTSESSION``, read by ``chatsite.memory.get_memory()``.
"""

from __future__ import annotations

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent

# Set DJANGO_SECRET_KEY in production; this default is for trying the example only.
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "insecure-example-key-change-me")
DEBUG = os.environ.get("DJANGO_DEBUG", "") == "1"
ALLOWED_HOSTS = os.environ.get("DJANGO_ALLOWED_HOSTS", "localhost,127.0.0.1").split(",")

INSTALLED_APPS: list[str] = []
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.common.CommonMiddleware",
]
ROOT_URLCONF = "chatsite.urls"
WSGI_APPLICATION = "chatsite.wsgi.application"

# Conversations live in agentsession's own SQLite file, not in Django's database.
DATABASES: dict[str, dict[str, str]] = {}

USE_TZ = True
STATIC_URL = "static/"

# Session memory: one SQLiteSessionMemory per process, built from these on first use.
AGENTSESSION = {
    "DATABASE": os.environ.get("AGENTSESSION_DB", str(BASE_DIR / "conversations.db")),
    "BUSY_TIMEOUT": 5.0,  # seconds a write waits for other writers (threads, processes)
    "SYNCHRONOUS": "FULL",  # or "NORMAL": faster, still safe if the process crashes
}
