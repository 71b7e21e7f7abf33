//! PLACEHOLDER: command module, filled in by its own change.
