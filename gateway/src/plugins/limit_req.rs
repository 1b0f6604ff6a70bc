//! `limit_req`: a request rate per key (leaky bucket): requests above the
//! rate wait to match it, up to `burst` excess; beyond that, rejected.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pingora_config::v1;
use pingora_proxy::Session;

use super::limits::{KeySource, rejection};
use super::{BuildCx, Flow, Hooks, Plugin, PluginCtx, Response, shared_state};

/// Per key: the excess (requests above the rate, leaking at `rate`/s) and
/// when it was last updated.
#[derive(Default)]
pub struct Buckets {
    map: Mutex<HashMap<Box<[u8]>, Bucket, foldhash::fast::RandomState>>,
}

/// The excess and when it was computed.
type Bucket = (f64, Instant);

pub struct LimitReq {
    rate: f64,
    burst: f64,
    nodelay: bool,
    key: KeySource,
    rejection: Response,
    buckets: Arc<Buckets>,
}

pub fn build(cfg: &v1::LimitReqPlugin, cx: &mut BuildCx<'_>) -> Result<LimitReq, String> {
    let key = KeySource::new(cfg.key.as_ref()).map_err(|e| format!("key: {e}"))?;
    Ok(LimitReq {
        rate: cfg.rate,
        burst: f64::from(cfg.burst),
        nodelay: cfg.nodelay,
        rejection: rejection(cfg.rejected_code, &cfg.rejected_msg),
        buckets: shared_state(format!("limit_req:{}:{}:{}:{key:?}", cx.scope, cfg.rate, cfg.burst)),
        key,
    })
}

impl LimitReq {
    /// `None` to reject, else how long to wait.
    fn admit(&self, key: &[u8]) -> Option<Duration> {
        let mut map = self.buckets.map.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if map.len() > 100_000 {
            let horizon = (self.burst + 1.0) / self.rate;
            map.retain(|_, (_, at)| now.duration_since(*at).as_secs_f64() < horizon);
        }
        let (excess, at) = map.get(key).copied().unwrap_or((-1.0, now));
        // Leak since the last request; the first request starts at -1 so
        // that it passes with no excess.
        let leaked = (excess - now.duration_since(at).as_secs_f64() * self.rate).max(-1.0);
        let next = leaked + 1.0;
        if next > self.burst {
            return None;
        }
        map.insert(key.into(), (next, now));
        if next <= 0.0 || self.nodelay { Some(Duration::ZERO) } else { Some(Duration::from_secs_f64(next / self.rate)) }
    }
}

#[async_trait::async_trait]
impl Plugin for LimitReq {
    fn hooks(&self) -> Hooks {
        Hooks::REQUEST
    }

    async fn request(&self, session: &mut Session, ctx: &mut PluginCtx) -> pingora_error::Result<Flow> {
        let key = self.key.key(session, ctx);
        match self.admit(&key) {
            None => Ok(Flow::Respond(self.rejection.clone())),
            Some(wait) => {
                if !wait.is_zero() {
                    tokio::time::sleep(wait).await;
                }
                Ok(Flow::Continue)
            }
        }
    }
}
