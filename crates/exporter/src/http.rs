//! The HTTP endpoint: a landing page at `/`, the metrics at the configured path, 404
//! elsewhere.

use std::future::Future;
use std::sync::Arc;

use warp::Filter;
use warp::http::{Response, StatusCode, header};
use warp::path::FullPath;

use crate::exposition::Exposition;

/// The content type of the Prometheus text format.
const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Serves until `shutdown` completes.
pub(crate) async fn serve(
    listener: std::net::TcpListener,
    metrics_path: String,
    exposition: Arc<Exposition>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    listener.set_nonblocking(true)?;
    let listener = tokio::net::TcpListener::from_std(listener)?;
    let routes = warp::get()
        .and(warp::path::full())
        .map(move |path: FullPath| respond(path.as_str(), &metrics_path, &exposition));
    warp::serve(routes)
        .incoming(listener)
        .graceful(shutdown)
        .run()
        .await;
    Ok(())
}

fn respond(path: &str, metrics_path: &str, exposition: &Exposition) -> Response<String> {
    let path = if path.len() > 1 {
        path.trim_end_matches('/')
    } else {
        path
    };
    let (status, content_type, body) = if path == metrics_path {
        (StatusCode::OK, METRICS_CONTENT_TYPE, exposition.render())
    } else if path == "/" {
        (
            StatusCode::OK,
            "text/html; charset=utf-8",
            landing_page(metrics_path),
        )
    } else {
        (
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            "404 page not found\n".into(),
        )
    };
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, content_type)
        .body(body)
        .unwrap_or_default()
}

/// The landing page. The metrics path is a clean URL path by the settings' rules; it is
/// escaped all the same, so that no setting can put markup into the page.
fn landing_page(metrics_path: &str) -> String {
    let metrics_path = escape_html(metrics_path);
    format!(
        "<!DOCTYPE html>\n<html>\n<head><title>conntrack_exporter</title></head>\n<body>\n\
         <h1>conntrack_exporter</h1>\n\
         <p>Per remote host, the TCP connections in the kernel's connection tracking table: \
         opening, open, closing and recently closed.</p>\n\
         <p><a href=\"{metrics_path}\">Metrics</a></p>\n\
         <p>Version {}</p>\n</body>\n</html>\n",
        env!("CARGO_PKG_VERSION")
    )
}

/// `text` with the characters that mean something in HTML replaced by entities.
fn escape_html(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            c => escaped.push(c),
        }
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_landing_page_links_the_metrics_path_escaped() {
        assert!(landing_page("/metrics").contains("<a href=\"/metrics\">"));
        let page = landing_page("/\"><script>x('&')</script>");
        assert!(
            page.contains(
                "<a href=\"/&quot;&gt;&lt;script&gt;x(&#39;&amp;&#39;)&lt;/script&gt;\">"
            ),
            "{page}"
        );
        assert!(!page.contains("<script>"), "{page}");
    }
}
