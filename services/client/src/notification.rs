//! PLACEHOLDER: Package#0 reception (UDP WAP Push, push messages), filled in by its own change.
