"""Synthetic breach drills: generate realistic logs with planted leaks, replay them through the
real watch path on an accelerated clock, and score detection, incidents and notifications."""
