//! The one HTTP toolkit for every outbound client, helpdesks and the LLM alike: client timeouts,
//! a retry loop with jittered backoff that honours a capped `Retry-After`, the error class of a
//! status, failed exchanges in words, and credentials kept out of what is printed.
//!
//! It knows nothing of the clients built on it: each maps [`StatusClass`] onto its own error
//! type and tells [`RetryPolicy::run`] through [`RetryableError`] which failures may pass.

mod failure;
mod redact;
mod retry;
mod settings;
mod text;

pub use failure::{StatusClass, describe_transport_error, error_chain};
pub use redact::{redact_secrets, redact_url};
pub use retry::{RetryPolicy, RetryableError, parse_reset_epoch, parse_retry_after};
pub use settings::{HttpSettings, client_builder, install_crypto_provider};
pub use text::{clip, clip_with_ellipsis};
