//! `ip_restriction`: allows or denies clients by address, optionally
//! reading the client address from `X-Forwarded-For` when the TCP peer is a
//! trusted proxy.

use std::net::IpAddr;

use ipnet::IpNet;
use pingora_config::v1;
use pingora_proxy::Session;

use super::{BuildCx, Flow, Hooks, Plugin, PluginCtx, Response};
use crate::snapshot::parse_net;

pub struct IpRestriction {
    allow: Vec<IpNet>,
    deny: Vec<IpNet>,
    trusted: Vec<IpNet>,
    real_ip_header: http::HeaderName,
    rejection: Response,
}

fn nets(list: &[String], field: &str) -> Result<Vec<IpNet>, String> {
    list.iter().map(|s| parse_net(s).ok_or_else(|| format!("{field}: `{s}` is not an address or CIDR block"))).collect()
}

pub fn build(cfg: &v1::IpRestrictionPlugin, _cx: &mut BuildCx<'_>) -> Result<IpRestriction, String> {
    let header = if cfg.real_ip_header.is_empty() { "x-forwarded-for" } else { cfg.real_ip_header.as_str() };
    let message = if cfg.message.is_empty() { "Your IP address is not allowed" } else { cfg.message.as_str() };
    Ok(IpRestriction {
        allow: nets(&cfg.allow, "allow")?,
        deny: nets(&cfg.deny, "deny")?,
        trusted: nets(&cfg.trusted_proxies, "trusted_proxies")?,
        real_ip_header: http::HeaderName::try_from(header).map_err(|e| format!("real_ip_header: {e}"))?,
        rejection: Response::error(cfg.status.unwrap_or(403) as u16, message),
    })
}

impl IpRestriction {
    fn trusted(&self, ip: IpAddr) -> bool {
        self.trusted.iter().any(|n| n.contains(&ip))
    }

    /// The client address: the peer, or, when the peer is a trusted proxy,
    /// the rightmost address of the header chain that is not trusted.
    fn client(&self, session: &Session) -> Option<IpAddr> {
        let peer = super::client_ip(session)?.to_canonical();
        if self.trusted.is_empty() || !self.trusted(peer) {
            return Some(peer);
        }
        let mut client = peer;
        for value in session.req_header().headers.get_all(&self.real_ip_header).iter().rev() {
            let Ok(text) = value.to_str() else { return Some(client) };
            for part in text.rsplit(',') {
                let Ok(ip) = part.trim().parse::<IpAddr>() else { return Some(client) };
                client = ip.to_canonical();
                if !self.trusted(client) {
                    return Some(client);
                }
            }
        }
        Some(client)
    }
}

#[async_trait::async_trait]
impl Plugin for IpRestriction {
    fn hooks(&self) -> Hooks {
        Hooks::REQUEST
    }

    fn request_now(&self, session: &mut Session, ctx: &mut PluginCtx) -> Option<pingora_error::Result<Flow>> {
        Some(self.check(session, ctx))
    }
}

impl IpRestriction {
    /// The request phase (it never waits: [`Plugin::request_now`]).
    fn check(&self, session: &mut Session, _ctx: &mut PluginCtx) -> pingora_error::Result<Flow> {
        let Some(ip) = self.client(session) else { return Ok(Flow::Respond(self.rejection.clone())) };
        let denied = self.deny.iter().any(|n| n.contains(&ip))
            || (!self.allow.is_empty() && !self.allow.iter().any(|n| n.contains(&ip)));
        Ok(if denied { Flow::Respond(self.rejection.clone()) } else { Flow::Continue })
    }
}
