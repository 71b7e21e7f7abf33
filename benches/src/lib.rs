//! Shared inputs for omadm's criterion benches (the benches themselves live in benches/).
