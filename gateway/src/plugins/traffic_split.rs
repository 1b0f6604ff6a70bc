//! `traffic_split`: sends matching requests to other upstreams by weight.

use std::sync::Arc;

use pingora_config::v1;
use pingora_config::v1::weighted_upstream::Target;
use pingora_proxy::Session;

use super::{BuildCx, Flow, Hooks, Plugin, PluginCtx};
use crate::router::RequestMatch;
use crate::upstream::Upstream;

struct Rule {
    matcher: RequestMatch,
    /// `None` is the route's own upstream.
    targets: Vec<(Option<Arc<Upstream>>, u32)>,
    total: u32,
}

pub struct TrafficSplit {
    rules: Vec<Rule>,
}

pub fn build(cfg: &v1::TrafficSplitPlugin, cx: &mut BuildCx<'_>) -> Result<TrafficSplit, String> {
    let mut rules = Vec::new();
    for (i, r) in cfg.rules.iter().enumerate() {
        let matcher = RequestMatch::new(&r.headers, &r.query, &r.cookies).map_err(|e| format!("rules[{i}]: {e}"))?;
        let mut targets = Vec::new();
        for (j, w) in r.weighted_upstreams.iter().enumerate() {
            let weight = w.weight.unwrap_or(1);
            let target =
                match w.target.as_ref() {
                    Some(Target::UpstreamId(id)) => Some(cx.upstreams.get(id).cloned().ok_or_else(|| {
                        format!("rules[{i}].weighted_upstreams[{j}]: upstream {id:?} does not exist")
                    })?),
                    Some(Target::Upstream(u)) => {
                        let key = format!("traffic_split:{}:{i}:{j}", cx.scope);
                        let mut errors = Vec::new();
                        let built =
                            crate::snapshot::upstream_for(cx.upstreams, cx.previous_upstreams, key, u, &mut errors);
                        if !errors.is_empty() {
                            return Err(format!("rules[{i}].weighted_upstreams[{j}].upstream: {}", errors.join("; ")));
                        }
                        built
                    }
                    Some(Target::Default(_)) | None => None,
                };
            targets.push((target, weight));
        }
        let total = targets.iter().map(|(_, w)| *w).sum();
        rules.push(Rule { matcher, targets, total });
    }
    Ok(TrafficSplit { rules })
}

#[async_trait::async_trait]
impl Plugin for TrafficSplit {
    fn hooks(&self) -> Hooks {
        Hooks::REQUEST
    }

    fn request_now(&self, session: &mut Session, ctx: &mut PluginCtx) -> Option<pingora_error::Result<Flow>> {
        Some(self.check(session, ctx))
    }
}

impl TrafficSplit {
    /// The request phase (it never waits: [`Plugin::request_now`]).
    fn check(&self, session: &mut Session, ctx: &mut PluginCtx) -> pingora_error::Result<Flow> {
        let req = session.req_header();
        let Some(rule) = self.rules.iter().find(|r| r.matcher.accept(&req.headers, req.uri.query())) else {
            return Ok(Flow::Continue);
        };
        if rule.total == 0 {
            return Ok(Flow::Continue);
        }
        let mut pick = fastrand::u32(..rule.total);
        for (target, weight) in &rule.targets {
            if pick < *weight {
                ctx.upstream = target.clone();
                break;
            }
            pick -= weight;
        }
        Ok(Flow::Continue)
    }
}
