"""The inference pipeline: from a domain ChatRequest to a stream of answer pieces."""
