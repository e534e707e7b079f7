//! json-final: a final action that confirms the verification with a small JSON document.
//!
//! Responds 200 with `{"credential":<id>,"message":"successfully verified"}`.

use otp_plugin_sdk::{FinalAction, HttpResponse, RequestContext};

/// The exported final action.
pub struct JsonFinal;

/// Builds the confirmation response for `credential_id`.
pub fn response(credential_id: &str) -> HttpResponse {
    let body = serde_json::json!({
        "credential": credential_id,
        "message": "successfully verified",
    });
    HttpResponse::new(200)
        .header("content-type", "application/json")
        .body(body.to_string())
}

impl FinalAction for JsonFinal {
    fn complete(
        credential_id: &str,
        _channel: &str,
        _ctx: &RequestContext,
    ) -> Result<HttpResponse, String> {
        Ok(response(credential_id))
    }
}

otp_plugin_sdk::export_final_action!(JsonFinal);

#[cfg(test)]
mod tests {
    use super::response;

    #[test]
    fn body_is_compact_json_with_the_id_as_a_string() {
        let r = response("\"bob\"");
        assert_eq!(r.status, 200);
        assert_eq!(
            r.headers,
            vec![("content-type".to_string(), "application/json".to_string())]
        );
        assert_eq!(
            String::from_utf8(r.body).unwrap(),
            r#"{"credential":"\"bob\"","message":"successfully verified"}"#
        );
    }
}
