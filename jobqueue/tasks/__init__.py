"""Handlers shipped with jobqueue: demo job types and the workers' periodic maintenance."""

from __future__ import annotations
