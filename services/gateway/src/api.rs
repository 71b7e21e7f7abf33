//! PLACEHOLDER: api of the HTTP edge, filled in by its own change.
