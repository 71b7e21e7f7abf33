//! What the operator API does to a device, as use cases any role can call (the gateway's
//! handlers today, the campaigns role next): validation, the records written and the events emitted.
//!
//! Each use case takes the Store and plain values, and fails with its own error enum; the
//! caller parses its input and maps the errors to its answer (HTTP statuses for the API).

pub mod notify;
pub mod queue;
