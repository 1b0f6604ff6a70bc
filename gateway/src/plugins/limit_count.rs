//! `limit_count`: a fixed number of requests per window and key.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::HeaderValue;
use pingora_config::v1;
use pingora_proxy::Session;

use super::limits::{KeySource, rejection};
use super::{BuildCx, Flow, Hooks, Plugin, PluginCtx, Response, shared_state};
use crate::headers::Name;
use crate::upstream::duration;

/// The windows of one limit (or group), sharded to keep threads apart.
#[derive(Default)]
pub struct Windows {
    shards: [Mutex<Shard>; 16],
}

#[derive(Default)]
struct Shard {
    windows: HashMap<Box<[u8]>, (Instant, u32), foldhash::fast::RandomState>,
    /// Expired windows are swept when the map grows past this.
    sweep_at: usize,
}

impl Windows {
    /// Counts a request; `(allowed, remaining, seconds until reset)`.
    fn hit(&self, key: &[u8], count: u32, window: Duration) -> (bool, u32, u64) {
        let shard = {
            use std::hash::BuildHasher;
            &self.shards[(foldhash::fast::FixedState::with_seed(7).hash_one(key) % 16) as usize]
        };
        let mut shard = shard.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if shard.windows.len() >= shard.sweep_at.max(1024) {
            shard.windows.retain(|_, (start, _)| now.duration_since(*start) < window);
            shard.sweep_at = shard.windows.len() * 2;
        }
        let entry = match shard.windows.get_mut(key) {
            Some(e) => e,
            None => shard.windows.entry(key.into()).or_insert((now, 0)),
        };
        if now.duration_since(entry.0) >= window {
            *entry = (now, 0);
        }
        let reset = window.saturating_sub(now.duration_since(entry.0)).as_secs_f64().ceil() as u64;
        if entry.1 >= count {
            return (false, 0, reset);
        }
        entry.1 += 1;
        (true, count - entry.1, reset)
    }
}

pub struct LimitCount {
    count: u32,
    window: Duration,
    key: KeySource,
    headers: bool,
    limit_value: HeaderValue,
    rejection: Response,
    windows: Arc<Windows>,
}

pub fn build(cfg: &v1::LimitCountPlugin, cx: &mut BuildCx<'_>) -> Result<LimitCount, String> {
    let window = cfg.time_window.as_ref().map(duration).ok_or("time_window is required")?;
    let key = KeySource::new(cfg.key.as_ref()).map_err(|e| format!("key: {e}"))?;
    // Counters survive reloads while the same limit exists in the same
    // scope (or group).
    let state_key = if cfg.group.is_empty() {
        format!("limit_count:{}:{}:{window:?}:{key:?}", cx.scope, cfg.count)
    } else {
        format!("limit_count:group:{}:{}:{window:?}:{key:?}", cfg.group, cfg.count)
    };
    Ok(LimitCount {
        count: cfg.count,
        window,
        key,
        headers: cfg.show_limit_headers.unwrap_or(true),
        limit_value: HeaderValue::from(cfg.count),
        rejection: rejection(cfg.rejected_code, &cfg.rejected_msg),
        windows: shared_state(state_key),
    })
}

static LIMIT: Name = Name::from_static("x-ratelimit-limit", "X-RateLimit-Limit");
static REMAINING: Name = Name::from_static("x-ratelimit-remaining", "X-RateLimit-Remaining");
static RESET: Name = Name::from_static("x-ratelimit-reset", "X-RateLimit-Reset");

#[async_trait::async_trait]
impl Plugin for LimitCount {
    fn hooks(&self) -> Hooks {
        Hooks::REQUEST
    }

    fn request_now(&self, session: &mut Session, ctx: &mut PluginCtx) -> Option<pingora_error::Result<Flow>> {
        Some(self.check(session, ctx))
    }
}

impl LimitCount {
    /// The request phase (it never waits: [`Plugin::request_now`]).
    fn check(&self, session: &mut Session, ctx: &mut PluginCtx) -> pingora_error::Result<Flow> {
        let key = self.key.key(session, ctx);
        let (allowed, remaining, reset) = self.windows.hit(&key, self.count, self.window);
        if self.headers {
            ctx.response_headers.push((LIMIT.clone(), self.limit_value.clone()));
            ctx.response_headers.push((REMAINING.clone(), HeaderValue::from(remaining)));
            ctx.response_headers.push((RESET.clone(), HeaderValue::from(reset)));
        }
        Ok(if allowed { Flow::Continue } else { Flow::Respond(self.rejection.clone()) })
    }
}
