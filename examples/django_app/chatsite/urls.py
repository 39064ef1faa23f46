"""URLs of the chat example."""

from __future__ import annotations

from django.urls import path

from . import views

urlpatterns = [
    path("chat", views.chat, name="chat"),
    path("sessions/<str:session_id>", views.history, name="history"),
]
