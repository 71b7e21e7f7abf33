//! PLACEHOLDER: Appendix E multipart, filled in by its own change.
