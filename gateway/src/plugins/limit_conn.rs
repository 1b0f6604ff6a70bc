//! `limit_conn`: concurrent requests per key. A slot is held from the
//! request phase until the request ends (its guard lives in the request's
//! plugin context).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pingora_config::v1;
use pingora_proxy::Session;

use super::limits::{KeySource, rejection};
use super::{BuildCx, Flow, Hooks, Plugin, PluginCtx, Response, shared_state};
use crate::upstream::duration;

#[derive(Default)]
pub struct Slots {
    in_use: Mutex<HashMap<Box<[u8]>, u32, foldhash::fast::RandomState>>,
}

/// Releases a slot when the request ends.
struct Slot {
    slots: Arc<Slots>,
    key: Box<[u8]>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut map = self.slots.in_use.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = map.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.key);
            }
        }
    }
}

pub struct LimitConn {
    conn: u32,
    burst: u32,
    delay: Duration,
    key: KeySource,
    rejection: Response,
    slots: Arc<Slots>,
}

pub fn build(cfg: &v1::LimitConnPlugin, cx: &mut BuildCx<'_>) -> Result<LimitConn, String> {
    let key = KeySource::new(cfg.key.as_ref()).map_err(|e| format!("key: {e}"))?;
    Ok(LimitConn {
        conn: cfg.conn,
        burst: cfg.burst,
        delay: cfg.burst_delay.as_ref().map(duration).unwrap_or(Duration::from_millis(100)),
        rejection: rejection(cfg.rejected_code, &cfg.rejected_msg),
        slots: shared_state(format!("limit_conn:{}:{}:{}:{key:?}", cx.scope, cfg.conn, cfg.burst)),
        key,
    })
}

#[async_trait::async_trait]
impl Plugin for LimitConn {
    fn hooks(&self) -> Hooks {
        Hooks::REQUEST
    }

    async fn request(&self, session: &mut Session, ctx: &mut PluginCtx) -> pingora_error::Result<Flow> {
        let key: Box<[u8]> = self.key.key(session, ctx).as_slice().into();
        let taken = {
            let mut map = self.slots.in_use.lock().unwrap_or_else(|e| e.into_inner());
            let n = map.entry(key.clone()).or_insert(0);
            if *n >= self.conn + self.burst {
                None
            } else {
                *n += 1;
                Some(*n)
            }
        };
        let Some(n) = taken else { return Ok(Flow::Respond(self.rejection.clone())) };
        ctx.guards.push(Box::new(Slot { slots: self.slots.clone(), key }));
        if n > self.conn {
            tokio::time::sleep(self.delay).await;
        }
        Ok(Flow::Continue)
    }
}
