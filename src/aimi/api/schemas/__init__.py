"""Wire schemas. They never leave `aimi.api`: `aimi.api.convert` turns them into domain types."""
