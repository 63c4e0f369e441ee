//! Shared helpers for stead end-to-end tests.
