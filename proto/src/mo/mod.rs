//! PLACEHOLDER: mo module, filled in by its own change.
