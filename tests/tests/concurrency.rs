//! Single use under concurrency: 64 simultaneous verifies of one cookie state.

use otp_server_blackbox::{Server, StatusCode};
use std::sync::Arc;

async fn race(server: &Arc<Server>, cookie: &str, code: &str) -> Vec<(StatusCode, String)> {
    let barrier = Arc::new(tokio::sync::Barrier::new(64));
    let mut tasks = Vec::new();
    for _ in 0..64 {
        let server = server.clone();
        let barrier = barrier.clone();
        let cookie = cookie.to_string();
        let code = code.to_string();
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            let a = server.verify(&code, Some(&cookie)).await;
            let error = if a.status == StatusCode::OK {
                String::new()
            } else {
                a.error()
            };
            (a.status, error)
        }));
    }
    let mut results = Vec::new();
    for task in tasks {
        results.push(task.await.unwrap());
    }
    results
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixty_four_verifies_with_the_right_code_one_success() {
    let server = Arc::new(Server::with_defaults());
    let a = server.create("\"race\"", None).await;
    assert_eq!(a.status, StatusCode::OK);
    let cookie = a.cookie().unwrap();
    let code = server.wait_code("\"race\"", 1);
    let results = race(&server, &cookie, &code).await;
    let ok = results.iter().filter(|(s, _)| *s == StatusCode::OK).count();
    assert_eq!(ok, 1, "{results:?}");
    for (status, error) in &results {
        if *status != StatusCode::OK {
            assert_eq!(
                (*status, error.as_str()),
                (StatusCode::BAD_REQUEST, "OTP:INVALID_COOKIE")
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixty_four_verifies_with_a_wrong_code_one_attempt_counted() {
    let server = Arc::new(Server::with_defaults());
    let a = server.create("\"race2\"", None).await;
    let cookie = a.cookie().unwrap();
    let code = server.wait_code("\"race2\"", 1);
    let wrong: String = code.chars().rev().collect::<String>();
    let wrong = if wrong == code {
        "0000000000".to_string()
    } else {
        wrong
    };
    let results = race(&server, &cookie, &wrong).await;
    let forbidden = results
        .iter()
        .filter(|(s, _)| *s == StatusCode::FORBIDDEN)
        .count();
    assert_eq!(forbidden, 1, "{results:?}");
    for (status, error) in &results {
        match *status {
            StatusCode::FORBIDDEN => assert_eq!(error, "OTP:INCORRECT"),
            other => assert_eq!(
                (other, error.as_str()),
                (StatusCode::BAD_REQUEST, "OTP:INVALID_COOKIE")
            ),
        }
    }
}
