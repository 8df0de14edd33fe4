"""Segment-targeted campaigns with control groups and uplift (see service.py)."""
