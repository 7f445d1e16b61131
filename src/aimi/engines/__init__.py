"""Engines own a model and its scheduler; they take token ids and yield token events."""
