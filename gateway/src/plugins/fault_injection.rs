//! `fault_injection`: delays and aborts a share of the requests.

use std::time::Duration;

use bytes::Bytes;
use pingora_config::v1;
use pingora_proxy::Session;

use super::{BuildCx, Flow, Hooks, Plugin, PluginCtx, Response};
use crate::upstream::duration;

pub struct FaultInjection {
    delay: Option<(Duration, f64)>,
    abort: Option<(Response, f64)>,
}

pub fn build(cfg: &v1::FaultInjectionPlugin, _cx: &mut BuildCx<'_>) -> Result<FaultInjection, String> {
    Ok(FaultInjection {
        delay: cfg
            .delay
            .as_ref()
            .and_then(|d| Some((d.duration.as_ref().map(duration)?, d.percentage.unwrap_or(100.0)))),
        abort: cfg.abort.as_ref().map(|a| {
            let mut r = Response::status(a.http_status as u16);
            r.body = Bytes::from(a.body.clone());
            (r, a.percentage.unwrap_or(100.0))
        }),
    })
}

/// Drawn independently for each fault: true with `percent` % chance.
fn drawn(percent: f64) -> bool {
    percent >= 100.0 || (percent > 0.0 && fastrand::f64() * 100.0 < percent)
}

#[async_trait::async_trait]
impl Plugin for FaultInjection {
    fn hooks(&self) -> Hooks {
        Hooks::REQUEST
    }

    async fn request(&self, _session: &mut Session, _ctx: &mut PluginCtx) -> pingora_error::Result<Flow> {
        if let Some((d, p)) = self.delay
            && drawn(p)
        {
            tokio::time::sleep(d).await;
        }
        if let Some((r, p)) = &self.abort
            && drawn(*p)
        {
            return Ok(Flow::Respond(r.clone()));
        }
        Ok(Flow::Continue)
    }
}
