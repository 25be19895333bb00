//! deskpilot: an AI support-agent worker over one normalized ticketing layer.
#![forbid(unsafe_code)]

pub mod ticketing;
