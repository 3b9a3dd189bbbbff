//! What the endpoint answers: the metrics at the configured path, a landing page at `/`,
//! liveness at `/-/healthy` and readiness at `/-/ready`. `HEAD` works wherever `GET` does;
//! other methods get 405 with `Allow: GET, HEAD`; other paths 404.

use std::sync::Arc;

use bytes::Bytes;
use warp::Filter;
use warp::http::header::{self, HeaderMap, HeaderValue};
use warp::http::{Method, StatusCode};
use warp::path::FullPath;
use warp::reply::Response;

use super::connections::Connection;
use super::health;
use super::pages::Pages;
use crate::exposition::{SharedRender, Status};

/// The content type of the Prometheus text format.
const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
/// The content type of every other answer but the landing page.
const TEXT_CONTENT_TYPE: &str = "text/plain; charset=utf-8";
/// The methods every path answers.
const ALLOWED_METHODS: &str = "GET, HEAD";
/// Path of the liveness endpoint.
pub(crate) const HEALTHY_PATH: &str = "/-/healthy";
/// Path of the readiness endpoint.
pub(crate) const READY_PATH: &str = "/-/ready";

/// The pages the endpoint serves and what they are made from.
pub(crate) struct Site {
    metrics_path: String,
    pages: Arc<Pages>,
    status: Arc<Status>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    Metrics,
    Landing,
    Healthy,
    Ready,
}

impl Site {
    /// The site with the metrics at `metrics_path`, rendered by `pages`.
    pub(crate) fn new(metrics_path: String, pages: SharedRender, status: Arc<Status>) -> Site {
        Site {
            metrics_path,
            pages: Pages::new(pages),
            status,
        }
    }

    /// The site as a warp filter. The connection a request came on is in its extensions.
    pub(crate) fn filter(
        self: Arc<Self>,
    ) -> impl Filter<Extract = (Response,), Error = warp::Rejection> + Clone + Send + Sync + 'static
    {
        warp::method()
            .and(warp::path::full())
            .and(warp::header::headers_cloned())
            .and(warp::ext::get::<Arc<Connection>>())
            .then(
                move |method: Method,
                      path: FullPath,
                      headers: HeaderMap,
                      connection: Arc<Connection>| {
                    let site = Arc::clone(&self);
                    async move {
                        site.respond(&method, path.as_str(), &headers, &connection)
                            .await
                    }
                },
            )
    }

    async fn respond(
        &self,
        method: &Method,
        path: &str,
        headers: &HeaderMap,
        connection: &Arc<Connection>,
    ) -> Response {
        let Some(route) = self.route(path) else {
            return text(StatusCode::NOT_FOUND, "404 page not found\n", false);
        };
        let head = match *method {
            Method::GET => false,
            Method::HEAD => true,
            _ => {
                let mut response = text(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "405 method not allowed: use GET or HEAD\n",
                    false,
                );
                response
                    .headers_mut()
                    .insert(header::ALLOW, HeaderValue::from_static(ALLOWED_METHODS));
                return response;
            }
        };
        match route {
            Route::Metrics => self.metrics(head, headers, connection).await,
            Route::Landing => respond_with(
                StatusCode::OK,
                "text/html; charset=utf-8",
                landing_page(&self.metrics_path).into(),
                head,
            ),
            Route::Healthy => match health::liveness(&self.status) {
                Ok(message) => text(StatusCode::OK, message, head),
                Err(message) => respond_with(
                    StatusCode::SERVICE_UNAVAILABLE,
                    TEXT_CONTENT_TYPE,
                    message.into(),
                    head,
                ),
            },
            Route::Ready => match health::readiness(&self.status) {
                Ok(message) => text(StatusCode::OK, message, head),
                Err(message) => text(StatusCode::SERVICE_UNAVAILABLE, message, head),
            },
        }
    }

    fn route(&self, path: &str) -> Option<Route> {
        let path = if path.len() > 1 {
            path.trim_end_matches('/')
        } else {
            path
        };
        if path == self.metrics_path {
            Some(Route::Metrics)
        } else {
            match path {
                "/" => Some(Route::Landing),
                HEALTHY_PATH => Some(Route::Healthy),
                READY_PATH => Some(Route::Ready),
                _ => None,
            }
        }
    }

    /// The metrics page, once the initial dump is applied; gzip-compressed when the client
    /// accepts it.
    async fn metrics(
        &self,
        head: bool,
        headers: &HeaderMap,
        connection: &Arc<Connection>,
    ) -> Response {
        if let Err(message) = health::readiness(&self.status) {
            return text(StatusCode::SERVICE_UNAVAILABLE, message, head);
        }
        let Ok(page) = self.pages.page().await else {
            return text(
                StatusCode::INTERNAL_SERVER_ERROR,
                "500 rendering the metrics failed; see the exporter's log\n",
                head,
            );
        };
        let gzip = accepts_gzip(headers);
        let body = if head {
            // Only the length goes out: nothing to hold.
            if gzip {
                page.gzip.clone()
            } else {
                page.text.clone()
            }
        } else {
            self.pages.hold(page, gzip, connection)
        };
        let mut response = respond_with(StatusCode::OK, METRICS_CONTENT_TYPE, body, head);
        let response_headers = response.headers_mut();
        response_headers.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
        if gzip {
            response_headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        }
        response
    }
}

/// A plain-text answer.
fn text(status: StatusCode, message: &'static str, head: bool) -> Response {
    respond_with(
        status,
        TEXT_CONTENT_TYPE,
        Bytes::from_static(message.as_bytes()),
        head,
    )
}

/// An answer with `body`, or for `HEAD` its headers alone (the length included).
fn respond_with(
    status: StatusCode,
    content_type: &'static str,
    body: Bytes,
    head: bool,
) -> Response {
    let length = body.len();
    let body = if head { Bytes::new() } else { body };
    let mut response = Response::new(body.into());
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    response
}

/// Whether `Accept-Encoding` allows gzip: named with a non-zero weight, or not named and
/// allowed by `*`.
fn accepts_gzip(headers: &HeaderMap) -> bool {
    let mut gzip = None;
    let mut any = None;
    let codings = headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','));
    for coding in codings {
        let mut parts = coding.split(';');
        let name = parts.next().unwrap_or_default().trim();
        let refused = parts.any(|parameter| {
            let parameter = parameter.trim();
            parameter
                .strip_prefix("q=")
                .or_else(|| parameter.strip_prefix("Q="))
                .and_then(|weight| weight.trim().parse::<f32>().ok())
                .is_some_and(|weight| weight <= 0.0)
        });
        if name.eq_ignore_ascii_case("gzip") || name.eq_ignore_ascii_case("x-gzip") {
            gzip = Some(!refused);
        } else if name == "*" {
            any = Some(!refused);
        }
    }
    gzip.or(any).unwrap_or(false)
}

fn landing_page(metrics_path: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html>\n<head><title>conntrack_exporter</title></head>\n<body>\n\
         <h1>conntrack_exporter</h1>\n\
         <p>Per remote host, the TCP connections in the kernel's connection tracking table: \
         opening, open, closing and recently closed.</p>\n\
         <ul>\n<li><a href=\"{metrics_path}\">Metrics</a></li>\n\
         <li><a href=\"{HEALTHY_PATH}\">Health</a></li>\n\
         <li><a href=\"{READY_PATH}\">Readiness</a></li>\n</ul>\n\
         <p>Version {}</p>\n</body>\n</html>\n",
        env!("CARGO_PKG_VERSION")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept_encoding(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_str(value).unwrap(),
        );
        headers
    }

    #[test]
    fn gzip_is_chosen_when_the_client_accepts_it() {
        for accepted in ["gzip", "deflate, gzip", "GZIP;q=0.5", "br;q=1, *", "x-gzip"] {
            assert!(accepts_gzip(&accept_encoding(accepted)), "{accepted}");
        }
        for refused in ["identity", "gzip;q=0", "gzip; q=0.0, *", "*;q=0", "deflate"] {
            assert!(!accepts_gzip(&accept_encoding(refused)), "{refused}");
        }
        assert!(!accepts_gzip(&HeaderMap::new()));
    }

    #[test]
    fn head_answers_carry_the_length_of_the_body_they_leave_out() {
        let response = text(StatusCode::OK, "twelve bytes", true);
        assert_eq!(response.headers()[header::CONTENT_LENGTH], "12");
    }
}
