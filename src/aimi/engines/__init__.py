"""Engines own a model and its scheduler; they take token ids (or, for an engine that templates
itself, the conversation) and yield token events."""
