//! PLACEHOLDER: status codes of Appendix C, filled in by its own change.
