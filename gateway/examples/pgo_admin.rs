//! The control-plane half of the profile-guided build's training
//! (`bench/pgo-train.sh`): the management API's calls against a running
//! gateway, so that the profile covers what a write does (validation, the
//! commit, the store, the snapshot compile, events) as well as the data
//! plane. Without it that code would count as never run, which the
//! compiler optimises for size.
//!
//! ```text
//! pgo_admin ADMIN_PORT UPSTREAM_PORT [ROUNDS]
//! ```
//!
//! Four clients at once, each `ROUNDS` times (default 100): create an
//! upstream and a route on it (with plugins and labels), update the route
//! (and once with a stale revision: ABORTED), read and list, try to delete
//! the upstream the route refers to (FAILED_PRECONDITION), a consumer's
//! life, then delete the route and the upstream. A fifth client exports
//! the config, applies it back as a dry run with a change, validates a
//! broken config (answered `valid: false`) and reads the status, as many
//! times; a watch stream takes every event. It fails on any answer other
//! than the expected one.

use pingora_config::v1;
use pingora_config::v1::config_service_client::ConfigServiceClient;
use pingora_config::v1::event_service_client::EventServiceClient;
use pingora_config::v1::resource_service_client::ResourceServiceClient;
use pingora_config::v1::status_service_client::StatusServiceClient;
use tonic::transport::Channel;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

const CLIENTS: usize = 4;

fn from_json<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> Result<T, BoxError> {
    Ok(serde_json::from_value(v)?)
}

fn revision(meta: Option<v1::ResourceMeta>) -> i64 {
    meta.map_or(0, |m| m.revision)
}

fn expect_code<T>(result: Result<T, tonic::Status>, code: tonic::Code, what: &str) -> Result<(), BoxError> {
    match result {
        Err(e) if e.code() == code => Ok(()),
        Err(e) => Err(format!("{what}: expected {code:?}, got {e}").into()),
        Ok(_) => Err(format!("{what}: expected {code:?}, got OK").into()),
    }
}

/// One client's rounds, on ids of its own.
async fn lifecycle(mut res: ResourceServiceClient<Channel>, c: usize, rounds: usize, up: u16) -> Result<(), BoxError> {
    for i in 0..rounds {
        let (uid, rid, user) = (format!("train-u{c}-{i}"), format!("train-r{c}-{i}"), format!("train-c{c}-{i}"));
        let u: v1::Upstream = from_json(serde_json::json!({
            "id": uid, "load_balancer": { "algorithm": if i % 2 == 0 { "ROUND_ROBIN" } else { "LEAST_CONNECTIONS" } },
            "nodes": [{ "host": "127.0.0.1", "port": up, "weight": 1 + i % 3 }],
        }))?;
        let u = res.create_upstream(v1::CreateUpstreamRequest { upstream: Some(u) }).await?.into_inner();
        let route = |n: usize| -> Result<v1::Route, BoxError> {
            from_json(serde_json::json!({
                "id": rid, "labels": { "team": format!("t{}", c), "round": format!("{n}") },
                "hosts": [format!("c{c}.train.test")], "uris": [format!("/train/{c}/{i}/*"), format!("/t/{c}/:id/{i}")],
                "methods": ["GET", "POST"], "upstream_id": uid,
                "plugins": { "proxy_rewrite": { "headers": { "set": [{ "name": "X-Round", "value": format!("{n}") }] } },
                             "limit_count": { "count": 1000 + n, "time_window": "60s" } },
            }))
        };
        let r = res.create_route(v1::CreateRouteRequest { route: Some(route(0)?) }).await?.into_inner();
        let first = revision(r.meta);
        let r = res
            .update_route(v1::UpdateRouteRequest { route: Some(route(1)?), expected_revision: first })
            .await?
            .into_inner();
        expect_code(
            res.update_route(v1::UpdateRouteRequest { route: Some(route(2)?), expected_revision: first }).await,
            tonic::Code::Aborted,
            "an update with a stale revision",
        )?;
        res.get_route(v1::GetRouteRequest { id: rid.clone() }).await?;
        let selector = vec![v1::LabelMatch { key: "team".into(), value: format!("t{c}") }];
        res.list_routes(v1::ListRoutesRequest { page_size: 10, label_selector: selector, ..Default::default() })
            .await?;
        expect_code(
            res.delete_upstream(v1::DeleteUpstreamRequest { id: uid.clone(), expected_revision: revision(u.meta) })
                .await,
            tonic::Code::FailedPrecondition,
            "deleting an upstream a route refers to",
        )?;
        let consumer: v1::Consumer = from_json(serde_json::json!({
            "username": user, "credentials": { "key_auth": { "key": format!("train-key-{c}-{i}") } },
        }))?;
        let k = res.create_consumer(v1::CreateConsumerRequest { consumer: Some(consumer) }).await?.into_inner();
        // The stored key comes back redacted; sending it back keeps it.
        let back = k.consumer.ok_or("a consumer entry without its consumer")?;
        let k = res
            .update_consumer(v1::UpdateConsumerRequest { consumer: Some(back), expected_revision: revision(k.meta) })
            .await?
            .into_inner();
        res.delete_consumer(v1::DeleteConsumerRequest { username: user, expected_revision: revision(k.meta) }).await?;
        res.delete_route(v1::DeleteRouteRequest { id: rid, expected_revision: revision(r.meta) }).await?;
        res.delete_upstream(v1::DeleteUpstreamRequest { id: uid, expected_revision: revision(u.meta) }).await?;
    }
    Ok(())
}

/// Whole-config calls, `rounds` times.
async fn whole(ch: Channel, rounds: usize) -> Result<(), BoxError> {
    let mut cfg = ConfigServiceClient::new(ch.clone()).max_decoding_message_size(usize::MAX);
    let mut status = StatusServiceClient::new(ch);
    for i in 0..rounds {
        let exported = cfg.export_config(v1::ExportConfigRequest {}).await?.into_inner();
        let mut config = exported.config.ok_or("an export without a config")?;
        if let Some(r) = config.routes.first_mut() {
            r.description = format!("dry run {i}");
        }
        let diff = cfg
            .apply_config(v1::ApplyConfigRequest {
                config: Some(config.clone()),
                expected_revision: exported.revision,
                dry_run: true,
            })
            .await;
        if let Err(e) = diff
            && e.code() != tonic::Code::Aborted
        {
            return Err(format!("a dry run: {e}").into());
        }
        // A route on an upstream that does not exist.
        let broken: v1::Route =
            from_json(serde_json::json!({ "id": "broken", "uris": ["/broken"], "upstream_id": "missing" }))?;
        config.routes.push(broken);
        let v = cfg.validate_config(v1::ValidateConfigRequest { config: Some(config) }).await?.into_inner();
        if v.valid {
            return Err("a config with a dangling reference validated".into());
        }
        status.get_status(v1::GetStatusRequest {}).await?;
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: pgo_admin ADMIN_PORT UPSTREAM_PORT [ROUNDS]";
    let admin: u16 = args.next().ok_or(usage)?.parse()?;
    let up: u16 = args.next().ok_or(usage)?.parse()?;
    let rounds: usize = args.next().map(|r| r.parse()).transpose()?.unwrap_or(100);
    let ch = Channel::from_shared(format!("http://127.0.0.1:{admin}"))?.connect().await?;

    let mut watch = EventServiceClient::new(ch.clone())
        .watch(v1::WatchRequest { start_revision: 0, ..Default::default() })
        .await?
        .into_inner();
    let events = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counted = events.clone();
    let watcher = tokio::spawn(async move {
        while let Ok(Some(_)) = watch.message().await {
            counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    });
    let started = std::time::Instant::now();
    let mut tasks: Vec<tokio::task::JoinHandle<Result<(), BoxError>>> =
        (0..CLIENTS).map(|c| tokio::spawn(lifecycle(ResourceServiceClient::new(ch.clone()), c, rounds, up))).collect();
    tasks.push(tokio::spawn(whole(ch.clone(), rounds)));
    for t in tasks {
        t.await??;
    }
    let took = started.elapsed();
    watcher.abort();
    println!(
        "pgo_admin: {CLIENTS} clients x {rounds} rounds in {:.1} s, {} events watched",
        took.as_secs_f64(),
        events.load(std::sync::atomic::Ordering::Relaxed)
    );
    Ok(())
}
