//! Switchyard's pure core: every decision that needs no IO.
//!
//! Layout (the modules form no circle; `tests/module_graph.rs` holds to it):
//! - [`ids`]: typed identifiers for accounts, keys and provider keys.
//! - [`secret`]: `Secret<T>`, a wrapper that never prints its content.
//! - [`alerts`]: alert rules' thresholds and periods, webhook signatures, retry schedule.
//! - [`apikey`]: issued API keys (format, checksum, hashing).
//! - [`base_url`]: a provider key's base URL path in its stored form, per provider kind.
//! - [`billing`]: what a parent bills its child (cost, multiplier, own prices).
//! - [`crypto`]: the key-encryption keyring sealing provider secrets (AES-256-GCM-SIV).
//! - [`endpoint`]: the proxied endpoints, their protocols, and error shapes per protocol.
//! - [`forward`]: what of a client's request goes upstream (headers, query, User-Agent).
//! - [`route`]: provider-key choice: levels, weighted round-robin, cool-down, switch-over.
//! - [`model`]: model name patterns (`exact` and `prefix*`).
//! - [`model_list`]: an upstream's own model list: where to ask, how to read it, what is kept.
//! - [`netguard`]: which upstream addresses are refused (special-purpose, private,
//!   IPv4 inside IPv6) and the operator's exceptions.
//! - [`object`]: struct fields read from JSON objects only.
//! - [`passthrough`]: provider keys whose calls carry their caller's own upstream
//!   credential: the issued key's header, which keys serve, whose failure a refusal is.
//! - [`policy`]: account policies, their intersection, and the bounds check.
//! - [`types`]: the basic kinds (status, provider kind); imports nothing of the crate.
//! - [`snapshot`]: the snapshot as plain data ([`snapshot::data`]), and its lookup
//!   tables ([`snapshot::compiled`]).
//! - [`request`]: the few facts routing reads from a request body.
//! - [`json_bounds`]: UTF-8 and nesting bounds every JSON body meets before routing.
//! - [`rules`]: a main account's rules (mappers, switch-over, resources, limits, prices).
//! - [`sse`]: framing of server-sent events.
//! - [`usage`]: token usage parsing and the usage event.
//! - [`error`]: the error vocabulary shared by every service.
//! - [`fields`]: what the usage store holds: each text field's bounds and allowed characters.
//! - [`limits`]: which counters a call is charged to; reservation, admission, settlement.
//! - [`quota`]: the caller's own quota from its limits, for the rate-limit headers of its answers.
//! - [`redact`]: what counts as key material in a log line, and scrubbing it.
//! - [`translate`]: protocol translation (Chat Completions and Messages both ways,
//!   Responses clients, Gemini upstreams: requests, whole answers, streams), through
//!   one neutral form.
//! - [`time`]: clock-free calendar arithmetic: [`time::UtcDay`] (a day that travels as
//!   `YYYY-MM-DD`), its month and the day/month bucket of a timestamp.

pub mod alerts;
pub mod apikey;
pub mod base_url;
pub mod billing;
pub mod crypto;
pub mod endpoint;
pub mod error;
pub mod fields;
pub mod forward;
pub mod ids;
pub mod json_bounds;
pub mod limits;
pub mod model;
pub mod model_list;
pub mod netguard;
pub mod object;
pub mod passthrough;
pub mod policy;
pub mod quota;
pub mod redact;
pub mod request;
pub mod route;
pub mod rules;
pub mod secret;
pub mod snapshot;
pub mod sse;
pub mod time;
pub mod translate;
pub mod types;
pub mod usage;
