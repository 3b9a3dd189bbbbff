//! The rendered pages that responses are sending, bounded in number.
//!
//! A response does not copy its page: its body references the page, and the reference
//! travels with the bytes until the HTTP machinery drops the last of them, wherever that is
//! (a socket buffer that a client never drains, an HTTP/2 stream held at a zero window).
//! Scrapes served by one render share one page. Responses served by different renders hold
//! different pages, though, so at most [`MAX_PAGES`] pages may be held by responses in
//! flight. When a scrape would need another render beyond that, the connections still
//! sending the oldest page are closed if it is at least [`OLD_PAGE`] old, and the scrape gets
//! the newest held page if that is younger than [`OLD_PAGE`], or else a render of its own:
//! clients that hold pages cannot make the exporter render more than about once per
//! [`OLD_PAGE`], nor hold more than [`MAX_PAGES`] pages. Nobody waits for a turn, so a scrape
//! is never stuck behind clients that do not read.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::CloseReason;
use super::connections::Connection;
use crate::exposition::{Page, RenderFailed, SharedRender};

/// Pages that responses in flight may hold at once: the memory of pages is at most this many
/// times a page (and its compression), plus the pages of connections being closed.
pub(crate) const MAX_PAGES: usize = 4;

/// A held page this old is given up (its connections closed) when a newer one is needed and
/// [`MAX_PAGES`] are held. A scraper reads its page in milliseconds.
pub(crate) const OLD_PAGE: Duration = Duration::from_secs(1);

/// Renders pages for scrapes and keeps count of the pages their responses hold.
pub(crate) struct Pages {
    render: SharedRender,
    held: Mutex<HashMap<PageKey, HeldPage>>,
    next_response: AtomicU64,
}

/// A page's address: unique among the pages alive, which are the only ones in the map.
type PageKey = usize;

/// A page held by responses in flight.
struct HeldPage {
    page: Weak<Page>,
    rendered: Instant,
    /// The responses sending it, with their connections.
    responses: HashMap<u64, Arc<Connection>>,
    /// Its connections were told to close: it is on its way out.
    released: bool,
}

impl Pages {
    /// Pages rendered by `render`.
    pub(crate) fn new(render: SharedRender) -> Arc<Pages> {
        Arc::new(Pages {
            render,
            held: Mutex::new(HashMap::new()),
            next_response: AtomicU64::new(0),
        })
    }

    /// The page for a scrape: the running render's, a new render's, or, when [`MAX_PAGES`]
    /// recent pages are held, the newest of them.
    pub(crate) async fn page(&self) -> Result<Arc<Page>, RenderFailed> {
        if !self.render.rendering()
            && let Some(newest) = self.make_room()
        {
            return Ok(newest);
        }
        self.render.page().await
    }

    /// When [`MAX_PAGES`] pages are held: releases the oldest if it is old enough, and
    /// returns the newest to be served again if it is recent.
    fn make_room(&self) -> Option<Arc<Page>> {
        let mut held = self.lock_held();
        let mut live: Vec<&mut HeldPage> =
            held.values_mut().filter(|page| !page.released).collect();
        if live.len() < MAX_PAGES {
            return None;
        }
        live.sort_by_key(|page| page.rendered);
        let oldest = &mut live[0];
        if oldest.rendered.elapsed() >= OLD_PAGE {
            oldest.released = true;
            for connection in oldest.responses.values() {
                connection.close(CloseReason::Stalled);
            }
        }
        live.last()
            .filter(|newest| newest.rendered.elapsed() < OLD_PAGE)
            .and_then(|newest| newest.page.upgrade())
    }

    /// The body of a response on `connection`: `page`'s text, or its gzip compression. The
    /// page counts as held until the last of these bytes is dropped.
    pub(crate) fn hold(
        self: &Arc<Self>,
        page: Arc<Page>,
        gzip: bool,
        connection: &Arc<Connection>,
    ) -> Bytes {
        let key = Arc::as_ptr(&page) as PageKey;
        let response = self.next_response.fetch_add(1, Ordering::Relaxed);
        self.lock_held()
            .entry(key)
            .or_insert_with(|| HeldPage {
                page: Arc::downgrade(&page),
                rendered: page.rendered,
                responses: HashMap::new(),
                released: false,
            })
            .responses
            .insert(response, Arc::clone(connection));
        Bytes::from_owner(HeldBytes {
            page,
            gzip,
            pages: Arc::clone(self),
            response,
        })
    }

    fn lock_held(&self) -> MutexGuard<'_, HashMap<PageKey, HeldPage>> {
        self.held.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The bytes of one response, and the page they hold.
struct HeldBytes {
    page: Arc<Page>,
    gzip: bool,
    pages: Arc<Pages>,
    response: u64,
}

impl AsRef<[u8]> for HeldBytes {
    fn as_ref(&self) -> &[u8] {
        if self.gzip {
            &self.page.gzip
        } else {
            &self.page.text
        }
    }
}

impl Drop for HeldBytes {
    fn drop(&mut self) {
        let key = Arc::as_ptr(&self.page) as PageKey;
        let mut held = self.pages.lock_held();
        if let Some(page) = held.get_mut(&key) {
            page.responses.remove(&self.response);
            if page.responses.is_empty() {
                held.remove(&key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exposition::{Exposition, Status};
    use crate::http::connections::Connections;
    use crate::settings::Naming;

    fn pages() -> Arc<Pages> {
        let tracker = Arc::new(tracker::Tracker::new());
        let (namespaces, _) = crate::watched::Namespaces::own(tracker);
        let status = Arc::new(Status::default());
        let idle = Duration::from_secs(300);
        let exposition = Exposition::new(
            namespaces,
            status,
            Naming::Seed,
            tracker::LabelNames::default(),
            Arc::default(),
            false,
            idle,
        );
        Pages::new(SharedRender::new(Arc::new(exposition)))
    }

    #[tokio::test]
    async fn a_page_is_held_until_the_last_slice_of_its_bytes_is_dropped() {
        let connections = Connections::new(4, OLD_PAGE, Arc::new(Status::default()));
        let slot = connections.admit().await;
        let pages = pages();
        let page = pages.page().await.unwrap();
        let body = pages.hold(Arc::clone(&page), true, &slot.connection);
        assert_eq!(body, page.gzip);
        let tail = body.slice(10..);
        drop(body);
        assert_eq!(pages.lock_held().len(), 1);
        drop(tail);
        assert!(pages.lock_held().is_empty());
    }

    #[tokio::test]
    async fn beyond_the_limit_the_oldest_page_is_released_once_old_enough() {
        let connections = Connections::new(8, OLD_PAGE, Arc::new(Status::default()));
        let pages = pages();
        let mut held = Vec::new();
        for _ in 0..MAX_PAGES {
            let slot = connections.admit().await;
            let page = pages.page().await.unwrap();
            held.push((pages.hold(page, false, &slot.connection), slot));
        }
        // Every held page is recent: the next scrape gets the newest again.
        let newest = pages.page().await.unwrap();
        assert_eq!(newest.text.as_ptr(), held[MAX_PAGES - 1].0.as_ptr());
        assert!(held.iter().all(|(_, slot)| !slot.connection.closing()));

        tokio::time::sleep(OLD_PAGE).await;
        let fresh = pages.page().await.unwrap();
        assert!(
            held.iter()
                .all(|(body, _)| body.as_ptr() != fresh.text.as_ptr())
        );
        let closing: Vec<bool> = held
            .iter()
            .map(|(_, slot)| slot.connection.closing())
            .collect();
        assert!(closing[0] && !closing[1..].contains(&true), "{closing:?}");
        assert_eq!(held[0].1.connection.closed().await, CloseReason::Stalled);
    }
}
