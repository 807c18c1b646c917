//! Switchyard's gRPC contracts (`proto/switchyard/v1/*.proto`).
//!
//! The generated code is committed in `src/gen/`; `tests/bootstrap.rs` regenerates it
//! with `protox` (pure Rust, no system `protoc`) and fails when it drifts, so an
//! ordinary build needs no code generator.

pub mod v1 {
    #![expect(
        clippy::allow_attributes,
        reason = "generated code carries its own allows"
    )]
    include!("gen/switchyard.v1.rs");
}
