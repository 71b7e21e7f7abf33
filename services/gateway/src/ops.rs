//! PLACEHOLDER: ops of the HTTP edge, filled in by its own change.
