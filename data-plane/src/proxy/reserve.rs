//! The call's most possible cost, at the owner's price, reserved on every counter
//! of its key and account chain before anything is sent (see [`crate::limits`]).

use switchyard_core::limits;
use switchyard_core::rules::Price;
use switchyard_core::snapshot::{Caller, Compiled};
use tracing::Instrument;

use super::error::ProxyError;
use crate::app::App;
use crate::limits::Admitted;

/// The price `served` is metered at, and the reservations for a prompt of
/// `prompt_bytes` and at most `max_output` tokens (`None`: no limit applies). A call
/// that spends nothing (`Endpoint::spends`) has no price and reserves only its request.
pub(super) async fn reserve(
    app: &App,
    snapshot: &Compiled,
    caller: &Caller,
    served: &str,
    (prompt_bytes, max_output): (usize, u64),
    spends: bool,
) -> Result<(Option<Price>, Option<Admitted>), ProxyError> {
    // A call that spends nothing still reads its credit in tokens at the model's price.
    let price = snapshot.price(caller.main_account(), served);
    let reservation = if spends {
        limits::reservation(prompt_bytes, max_output, price.as_ref())
    } else {
        limits::Reservation::default()
    };
    let admitted = app
        .gate
        .admit(snapshot, caller, served, reservation, price.as_ref())
        .instrument(tracing::info_span!("limits"))
        .await?;
    Ok((price.filter(|_| spends), admitted))
}
