//! Test-only routes: `POST /test/clock` moves the server's clock forward, for black-box
//! tests that must wait out a block, a cooldown or an expiry without sleeping;
//! `POST /test/panic` panics in its handler, so a test can see that a panic answers
//! 500 `SERVER` and the server goes on serving.
//!
//! The routes exist only when `test_clock` (`OTP_TEST_CLOCK=1`) is set, which the
//! configuration refuses in production mode.

use super::AppState;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::Json;

#[derive(serde::Deserialize)]
pub struct Advance {
    /// Milliseconds to move the clock forward.
    ms: u64,
}

pub async fn advance(
    State(state): State<AppState>,
    Query(advance): Query<Advance>,
) -> Result<Json<serde_json::Value>, StatusCode> {
    let clock = state.test_clock.as_ref().ok_or(StatusCode::NOT_FOUND)?;
    clock.advance(advance.ms);
    Ok(Json(
        serde_json::json!({ "now": crate::clock::Clock::now_ms(&**clock) }),
    ))
}

pub async fn panic() -> StatusCode {
    panic!("a test asked for a panic (POST /test/panic)")
}
