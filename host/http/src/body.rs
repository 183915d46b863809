//! Request bodies and paths whose rejections are problem documents too
//! (axum's own are plain text).

use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use serde::de::DeserializeOwned;

use crate::ApiError;

/// A JSON body: 400 if it is not JSON, 422 if it is the wrong shape, 415
/// without a JSON content type, 413 over [`crate::MAX_BODY_BYTES`].
pub(crate) struct JsonBody<T>(pub(crate) T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        // Refused by its announced length, without reading a byte of it.
        let announced = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        if let Some(length) = announced.filter(|&n| n > crate::MAX_BODY_BYTES as u64) {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                format!(
                    "the body is {length} bytes; the limit is {}",
                    crate::MAX_BODY_BYTES
                ),
            ));
        }
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(value)) => Ok(JsonBody(value)),
            Err(rejection) => Err(json_rejection(&rejection)),
        }
    }
}

fn json_rejection(rejection: &JsonRejection) -> ApiError {
    let code = match rejection {
        JsonRejection::JsonDataError(_) => "invalid_body",
        JsonRejection::JsonSyntaxError(_) => "malformed_json",
        JsonRejection::MissingJsonContentType(_) => "unsupported_media_type",
        _ if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => "body_too_large",
        _ => "unreadable_body",
    };
    ApiError::new(rejection.status(), code, rejection.body_text())
}

/// Path parameters: 400 when they do not parse.
pub(crate) struct PathParams<T>(pub(crate) T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for PathParams<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(PathParams(value)),
            Err(rejection) => Err(path_rejection(&rejection)),
        }
    }
}

fn path_rejection(rejection: &PathRejection) -> ApiError {
    ApiError::bad_request("invalid_path", rejection.body_text())
}

/// A JSON body that may be left out (no content type, no bytes): then the
/// default value.
pub(crate) struct OptionalJsonBody<T>(pub(crate) T);

impl<T: DeserializeOwned + Default, S: Send + Sync> FromRequest<S> for OptionalJsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let headers = req.headers();
        let length = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        let chunked = headers.contains_key(header::TRANSFER_ENCODING);
        if !headers.contains_key(header::CONTENT_TYPE) && !chunked && length.unwrap_or(0) == 0 {
            return Ok(OptionalJsonBody(T::default()));
        }
        let JsonBody(value) = JsonBody::<T>::from_request(req, state).await?;
        Ok(OptionalJsonBody(value))
    }
}
