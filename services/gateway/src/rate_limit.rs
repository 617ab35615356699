//! A per-key rate limit as tower middleware: one token bucket per API key (and one for
//! callers without a key), refilled continuously; a request that finds its bucket empty is
//! answered `429 Too Many Requests` with `Retry-After`, and counted.

use crate::stats::GatewayStats;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, Request, StatusCode};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// How fast one key may call: `per_second` requests on average, `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    /// Tokens added each second.
    pub per_second: f64,
    /// The bucket's size: requests a key may make at once after a quiet spell.
    pub burst: u32,
}

/// Which key a request was authenticated with (set by the authentication layer); a request
/// without one shares the anonymous bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CallerKey(pub usize);

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    filled_at: Instant,
}

/// Every key's bucket.
#[derive(Debug)]
pub(crate) struct Buckets {
    rate: RateLimit,
    /// Index `keys` is the anonymous bucket.
    buckets: Mutex<Vec<Bucket>>,
    refused: Arc<GatewayStats>,
}

impl Buckets {
    /// Full buckets for `keys` keys and the anonymous caller.
    pub(crate) fn new(rate: RateLimit, keys: usize, stats: Arc<GatewayStats>) -> Self {
        let now = Instant::now();
        Self {
            rate,
            buckets: Mutex::new(
                (0..=keys)
                    .map(|_| Bucket {
                        tokens: f64::from(rate.burst),
                        filled_at: now,
                    })
                    .collect(),
            ),
            refused: stats,
        }
    }

    /// Takes a token from `caller`'s bucket, or says how long until one is there.
    fn take(&self, caller: Option<CallerKey>, now: Instant) -> Result<(), Duration> {
        let mut buckets = self.buckets.lock().expect("rate limit lock");
        let anonymous = buckets.len() - 1;
        let index = caller.map_or(anonymous, |CallerKey(key)| key.min(anonymous));
        let bucket = &mut buckets[index];
        let elapsed = now
            .saturating_duration_since(bucket.filled_at)
            .as_secs_f64();
        bucket.tokens =
            (bucket.tokens + elapsed * self.rate.per_second).min(f64::from(self.rate.burst));
        bucket.filled_at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            return Ok(());
        }
        GatewayStats::count(&self.refused.rate_limited);
        Err(Duration::from_secs_f64(
            (1.0 - bucket.tokens) / self.rate.per_second,
        ))
    }

    /// Requests refused so far.
    pub(crate) fn refused(&self) -> u64 {
        self.refused.rate_limited.load(Ordering::Relaxed)
    }
}

/// The tower layer.
#[derive(Debug, Clone)]
pub(crate) struct RateLimitLayer {
    buckets: Arc<Buckets>,
}

impl RateLimitLayer {
    pub(crate) fn new(buckets: Arc<Buckets>) -> Self {
        Self { buckets }
    }
}

impl<S> tower_layer::Layer<S> for RateLimitLayer {
    type Service = RateLimited<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RateLimited {
            inner,
            buckets: Arc::clone(&self.buckets),
        }
    }
}

/// A service behind the rate limit.
#[derive(Debug, Clone)]
pub(crate) struct RateLimited<S> {
    inner: S,
    buckets: Arc<Buckets>,
}

impl<S, B> tower_service::Service<Request<B>> for RateLimited<S>
where
    S: tower_service::Service<Request<B>, Response = Response> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, context: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(context)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let caller = request.extensions().get::<CallerKey>().copied();
        match self.buckets.take(caller, Instant::now()) {
            Ok(()) => Box::pin(self.inner.call(request)),
            Err(wait) => {
                let per_second = self.buckets.rate.per_second;
                tracing::warn!(key = ?caller.map(|CallerKey(key)| key), refused = self.buckets.refused(), "rate limit reached");
                let mut response = (
                    StatusCode::TOO_MANY_REQUESTS,
                    format!(
                        "rate limit reached: this key may make {per_second} requests a second; retry in {} ms",
                        wait.as_millis().max(1)
                    ),
                )
                    .into_response();
                let seconds = wait.as_secs_f64().ceil().max(1.0) as u64;
                response
                    .headers_mut()
                    .insert(http::header::RETRY_AFTER, HeaderValue::from(seconds));
                Box::pin(std::future::ready(Ok(response)))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_gives_its_burst_then_refills_at_its_rate_and_keys_do_not_share() {
        let buckets = Buckets::new(
            RateLimit {
                per_second: 10.0,
                burst: 3,
            },
            2,
            Arc::default(),
        );
        let start = Instant::now();
        let alice = Some(CallerKey(0));
        for _ in 0..3 {
            assert_eq!(buckets.take(alice, start), Ok(()));
        }
        let wait = buckets.take(alice, start).unwrap_err();
        assert!(
            wait <= Duration::from_millis(100) && wait > Duration::ZERO,
            "{wait:?}"
        );
        assert_eq!(
            buckets.take(Some(CallerKey(1)), start),
            Ok(()),
            "another key has its own bucket"
        );
        assert_eq!(
            buckets.take(None, start),
            Ok(()),
            "so does the anonymous caller"
        );
        assert_eq!(
            buckets.take(alice, start + Duration::from_millis(100)),
            Ok(())
        );
        assert!(buckets
            .take(alice, start + Duration::from_millis(100))
            .is_err());
        assert_eq!(buckets.refused(), 2);
        // A long quiet spell refills to the burst, not beyond.
        let later = start + Duration::from_secs(60);
        for _ in 0..3 {
            assert_eq!(buckets.take(alice, later), Ok(()));
        }
        assert!(buckets.take(alice, later).is_err());
    }
}
