//! `basic_auth_users`: HTTP basic authentication against bcrypt hashes.
//!
//! A bcrypt check costs tens of milliseconds by design, so:
//! - it runs on tokio's blocking pool, one at a time, never on a thread that serves
//!   connections, and a flood of wrong passwords costs at most one core;
//! - a verified credential is remembered (as a keyed hash, never in clear), so that a
//!   scrape every few seconds costs one bcrypt check in all, not one per scrape, as
//!   exporter-toolkit does. The memory holds at most [`CACHE_CAPACITY`] credentials; only
//!   someone who knows a password can add one;
//! - an unknown user is checked against a decoy hash of the same cost, so that the time of an
//!   answer does not tell which users exist; bcrypt itself compares in constant time.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::sync::{Mutex, PoisonError};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use http::header::{AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE};
use http::{HeaderMap, HeaderValue, Response, StatusCode};
use ring::hmac;
use ring::rand::SystemRandom;

use crate::file::BcryptHash;

/// How many verified credentials are remembered.
pub const CACHE_CAPACITY: usize = 64;

/// The answer to a request without valid credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unauthorized;

impl Unauthorized {
    /// `401 Unauthorized` with `WWW-Authenticate: Basic`, which makes browsers and tools ask
    /// for credentials.
    pub fn response<B: From<&'static str>>(self) -> Response<B> {
        let mut response = Response::new(B::from("Unauthorized\n"));
        *response.status_mut() = StatusCode::UNAUTHORIZED;
        let headers = response.headers_mut();
        headers.insert(WWW_AUTHENTICATE, HeaderValue::from_static("Basic"));
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        response
    }
}

impl std::fmt::Display for Unauthorized {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("missing or wrong credentials")
    }
}

impl std::error::Error for Unauthorized {}

/// The users and what is known about their credentials.
pub(crate) struct BasicAuth {
    users: BTreeMap<String, String>,
    /// A hash no password matches, as costly as the users' hashes.
    decoy: String,
    /// Keys the remembered credentials; random per process.
    cache_key: hmac::Key,
    verified: Mutex<Verified>,
    /// One bcrypt check at a time.
    bcrypt_turn: tokio::sync::Mutex<()>,
}

/// The remembered credentials, oldest first.
#[derive(Default)]
struct Verified {
    set: HashSet<Vec<u8>>,
    order: VecDeque<Vec<u8>>,
}

impl Verified {
    fn insert(&mut self, credential: Vec<u8>) {
        if self.set.contains(&credential) {
            return;
        }
        if self.order.len() == CACHE_CAPACITY
            && let Some(oldest) = self.order.pop_front()
        {
            self.set.remove(&oldest);
        }
        self.order.push_back(credential.clone());
        self.set.insert(credential);
    }
}

impl BasicAuth {
    /// The users of `basic_auth_users`; `None` when there are none (no authentication).
    pub(crate) fn new(users: BTreeMap<String, BcryptHash>) -> Option<BasicAuth> {
        if users.is_empty() {
            return None;
        }
        let cost = users
            .values()
            .filter_map(|hash| hash.0.parse::<bcrypt::HashParts>().ok())
            .map(|parts| parts.get_cost())
            .max()
            .unwrap_or(bcrypt::DEFAULT_COST);
        let decoy = bcrypt::hash("no password matches this decoy", cost)
            .expect("a cost read from a valid hash is a valid cost");
        let cache_key = hmac::Key::generate(hmac::HMAC_SHA256, &SystemRandom::new())
            .expect("the system's random source works");
        Some(BasicAuth {
            users: users
                .into_iter()
                .map(|(user, hash)| (user, hash.0))
                .collect(),
            decoy,
            cache_key,
            verified: Mutex::new(Verified::default()),
            bcrypt_turn: tokio::sync::Mutex::new(()),
        })
    }

    /// How many users there are.
    pub(crate) fn users(&self) -> usize {
        self.users.len()
    }

    /// Whether `headers` carry the credentials of a user.
    pub(crate) async fn check(&self, headers: &HeaderMap) -> Result<(), Unauthorized> {
        let (user, password) = credentials(headers).ok_or(Unauthorized)?;
        let known = self.users.get(&user);
        let credential = self.credential(&user, &password);
        if known.is_some() && self.remembered(&credential) {
            return Ok(());
        }
        let hash = known.unwrap_or(&self.decoy).clone();
        let matches = {
            let _turn = self.bcrypt_turn.lock().await;
            tokio::task::spawn_blocking(move || bcrypt::verify(password, &hash).unwrap_or(false))
                .await
                .unwrap_or_else(|error| {
                    log::error!("basic auth: the password check failed: {error}");
                    false
                })
        };
        if known.is_some() && matches {
            self.lock().insert(credential);
            Ok(())
        } else {
            Err(Unauthorized)
        }
    }

    /// The keyed hash under which a credential is remembered.
    fn credential(&self, user: &str, password: &[u8]) -> Vec<u8> {
        let mut context = hmac::Context::with_key(&self.cache_key);
        context.update(&(user.len() as u64).to_be_bytes());
        context.update(user.as_bytes());
        context.update(password);
        context.sign().as_ref().to_vec()
    }

    fn remembered(&self, credential: &[u8]) -> bool {
        self.lock().set.contains(credential)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Verified> {
        self.verified.lock().unwrap_or_else(PoisonError::into_inner)
    }

    #[cfg(test)]
    fn remembered_count(&self) -> usize {
        self.lock().order.len()
    }
}

/// User and password of an `Authorization: Basic` header, if it is one.
fn credentials(headers: &HeaderMap) -> Option<(String, Vec<u8>)> {
    let value = headers.get(AUTHORIZATION)?.as_bytes();
    let (scheme, encoded) = value.split_at_checked(6)?;
    if !scheme.eq_ignore_ascii_case(b"basic ") {
        return None;
    }
    let decoded = BASE64.decode(encoded.trim_ascii()).ok()?;
    let colon = decoded.iter().position(|&byte| byte == b':')?;
    let user = String::from_utf8(decoded[..colon].to_vec()).ok()?;
    Some((user, decoded[colon + 1..].to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn users(entries: &[(&str, &str)]) -> BasicAuth {
        let users = entries
            .iter()
            .map(|(user, password)| {
                let hash = bcrypt::hash(password, 4).unwrap();
                (user.to_string(), hash.parse().unwrap())
            })
            .collect();
        BasicAuth::new(users).unwrap()
    }

    fn basic(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        headers
    }

    fn encoded(user_and_password: &str) -> HeaderMap {
        basic(&format!("Basic {}", BASE64.encode(user_and_password)))
    }

    #[test]
    fn the_authorization_header_is_read_as_go_reads_it() {
        assert_eq!(
            credentials(&encoded("alice:pa:ss")),
            Some(("alice".into(), b"pa:ss".to_vec()))
        );
        assert_eq!(
            credentials(&basic(&format!("bAsIc {}", BASE64.encode("bob:")))),
            Some(("bob".into(), Vec::new()))
        );
        assert_eq!(credentials(&HeaderMap::new()), None);
        assert_eq!(credentials(&basic("Bearer abc")), None);
        assert_eq!(credentials(&basic("Basic !!!")), None);
        assert_eq!(credentials(&encoded("no colon")), None);
        assert_eq!(credentials(&basic("Basic")), None);
    }

    #[tokio::test]
    async fn right_wrong_unknown_and_missing_credentials() {
        let auth = users(&[("alice", "wonderland"), ("bob", "builder")]);
        assert_eq!(auth.check(&encoded("alice:wonderland")).await, Ok(()));
        assert_eq!(auth.check(&encoded("bob:builder")).await, Ok(()));
        assert_eq!(
            auth.check(&encoded("alice:builder")).await,
            Err(Unauthorized)
        );
        assert_eq!(
            auth.check(&encoded("carol:wonderland")).await,
            Err(Unauthorized)
        );
        assert_eq!(auth.check(&encoded("alice:")).await, Err(Unauthorized));
        assert_eq!(auth.check(&HeaderMap::new()).await, Err(Unauthorized));
    }

    #[tokio::test]
    async fn only_verified_credentials_are_remembered_and_their_number_is_bounded() {
        let auth = users(&[("alice", "wonderland")]);
        assert_eq!(auth.check(&encoded("alice:wrong")).await, Err(Unauthorized));
        assert_eq!(auth.check(&encoded("mallory:x")).await, Err(Unauthorized));
        assert_eq!(auth.remembered_count(), 0);
        for _ in 0..3 {
            assert_eq!(auth.check(&encoded("alice:wonderland")).await, Ok(()));
        }
        assert_eq!(auth.remembered_count(), 1);

        // bcrypt reads 72 bytes of a password, so someone who knows it can make many that
        // verify: the memory stays bounded all the same.
        let long = "x".repeat(72);
        let auth = users(&[("alice", &long)]);
        for suffix in 0..CACHE_CAPACITY + 10 {
            let credential = format!("alice:{long}{suffix}");
            assert_eq!(auth.check(&encoded(&credential)).await, Ok(()));
        }
        assert_eq!(auth.remembered_count(), CACHE_CAPACITY);
    }

    #[test]
    fn no_users_means_no_authentication() {
        assert!(BasicAuth::new(BTreeMap::new()).is_none());
    }

    #[test]
    fn the_401_response_asks_for_basic_credentials() {
        let response: Response<String> = Unauthorized.response();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(response.headers()[WWW_AUTHENTICATE], "Basic");
    }
}
