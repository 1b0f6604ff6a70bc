//! The management API on the admin listener: gRPC (generated tonic
//! clients), grpc-web over HTTP/1.1, auth, validation, optimistic
//! concurrency, secrets, events, the file store's writes and crash safety.

use std::time::Duration;

use pingora_config::v1;
use pingora_config::v1::config_service_client::ConfigServiceClient;
use pingora_config::v1::event_service_client::EventServiceClient;
use pingora_config::v1::resource_service_client::ResourceServiceClient;
use pingora_config::v1::status_service_client::StatusServiceClient;
use prost::Message;
use serde_json::json;
use tonic::Code;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic_types::StatusExt;

use crate::harness::{Gateway, Options, Pki, Upstream, client, get, http_get_raw};

const EDITOR_KEY: &str = "editor-key-0123456789abcdef";
const VIEWER_KEY: &str = "viewer-key-0123456789abcdef";

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime")
}

#[derive(Clone)]
struct Auth(Option<MetadataValue<Ascii>>);

impl Interceptor for Auth {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(k) = &self.0 {
            req.metadata_mut().insert("authorization", k.clone());
        }
        Ok(req)
    }
}

type Svc = InterceptedService<Channel, Auth>;

struct Api {
    res: ResourceServiceClient<Svc>,
    cfg: ConfigServiceClient<Svc>,
    ev: EventServiceClient<Svc>,
    st: StatusServiceClient<Svc>,
}

async fn channel(gw: &Gateway) -> Channel {
    Channel::from_shared(gw.admin_url()).expect("url").connect().await.expect("connect to the admin listener")
}

async fn api(gw: &Gateway, key: Option<&str>) -> Api {
    let ch = channel(gw).await;
    let auth = Auth(key.map(|k| format!("Bearer {k}").parse().expect("metadata")));
    Api {
        res: ResourceServiceClient::with_interceptor(ch.clone(), auth.clone()),
        cfg: ConfigServiceClient::with_interceptor(ch.clone(), auth.clone()),
        ev: EventServiceClient::with_interceptor(ch.clone(), auth.clone()),
        st: StatusServiceClient::with_interceptor(ch, auth),
    }
}

fn from_json<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> T {
    serde_json::from_value(v).expect("a valid resource")
}

fn upstream(id: &str, port: u16) -> v1::Upstream {
    from_json(json!({ "id": id, "nodes": [{ "host": "127.0.0.1", "port": port }] }))
}

fn route(id: &str, uri: &str, upstream_id: &str) -> v1::Route {
    from_json(json!({ "id": id, "uris": [uri], "upstream_id": upstream_id }))
}

fn base_config(up: &Upstream) -> String {
    format!(
        "routes:\n  - {{ id: base, uris: [\"/base\"], upstream_id: u }}\nupstreams:\n  - {{ id: u, nodes: [{{ host: 127.0.0.1, port: {} }}] }}\n",
        up.port()
    )
}

fn start(up: &Upstream, admin_extra: &str) -> Gateway {
    let gw = Gateway::start_with(&base_config(up), Options { admin_extra: admin_extra.into(), ..Default::default() });
    gw.wait_admin();
    gw
}

fn keys() -> String {
    format!(
        "  api_keys:\n    - {{ name: ci, key: {EDITOR_KEY}, role: EDITOR }}\n    - {{ name: dash, key: {VIEWER_KEY}, role: VIEWER }}\n  cors_allowed_origins: [\"https://admin.example.com\"]\n"
    )
}

#[test]
fn every_kind_has_create_get_list_update_delete_and_a_new_route_serves_at_once() {
    let up = Upstream::start("origin");
    let gw = start(&up, "");
    let pki = Pki::new();
    let (cert, key) = pki.leaf("a.example.com", &["a.example.com"]);
    rt().block_on(async {
        let mut api = api(&gw, None).await;
        let r = &mut api.res;

        // Upstream, then a route to it, served by the data plane at once.
        let e = r.create_upstream(v1::CreateUpstreamRequest { upstream: Some(upstream("u2", up.port())) }).await;
        let e = e.expect("create upstream").into_inner();
        assert_eq!(e.upstream.as_ref().map(|u| u.id.as_str()), Some("u2"));
        let meta = e.meta.expect("meta");
        assert!(meta.revision > 1 && meta.create_revision == meta.revision && meta.update_time.is_some());
        let created = r.create_route(v1::CreateRouteRequest { route: Some(route("r2", "/new", "u2")) }).await;
        let created = created.expect("create route").into_inner();
        assert_eq!(http_get_raw(gw.port, "/new", "localhost").map(|r| r.1), Some("origin".into()));
        let again = r.create_route(v1::CreateRouteRequest { route: Some(route("r2", "/new", "u2")) }).await;
        assert_eq!(again.expect_err("duplicate").code(), Code::AlreadyExists);

        let got = r.get_route(v1::GetRouteRequest { id: "r2".into() }).await.expect("get").into_inner();
        assert_eq!(got.route.as_ref().map(|r| r.uris.clone()), Some(vec!["/new".to_owned()]));
        assert_eq!(
            r.get_route(v1::GetRouteRequest { id: "nope".into() }).await.expect_err("404").code(),
            Code::NotFound
        );

        let mut changed = route("r2", "/newer", "u2");
        changed.labels.insert("team".into(), "a".into());
        let rev = created.meta.expect("meta").revision;
        let updated = r
            .update_route(v1::UpdateRouteRequest { route: Some(changed), expected_revision: rev })
            .await
            .expect("update")
            .into_inner();
        let umeta = updated.meta.expect("meta");
        assert!(umeta.revision > rev && umeta.create_revision == rev);
        assert_eq!(http_get_raw(gw.port, "/newer", "localhost").map(|r| r.1), Some("origin".into()));
        assert_eq!(http_get_raw(gw.port, "/new", "localhost").map(|r| r.0), Some(404));

        let list = r.list_routes(v1::ListRoutesRequest::default()).await.expect("list").into_inner();
        let ids: Vec<_> = list.items.iter().filter_map(|e| e.route.as_ref()).map(|r| r.id.clone()).collect();
        assert_eq!(ids, ["base", "r2"]);
        let team = v1::LabelMatch { key: "team".into(), value: "a".into() };
        let list = r
            .list_routes(v1::ListRoutesRequest { label_selector: vec![team], ..Default::default() })
            .await
            .expect("list by label")
            .into_inner();
        assert_eq!(list.items.len(), 1);
        let del = r.delete_route(v1::DeleteRouteRequest { id: "r2".into(), expected_revision: umeta.revision }).await;
        assert!(del.expect("delete").into_inner().revision > umeta.revision);
        assert_eq!(http_get_raw(gw.port, "/newer", "localhost").map(|r| r.0), Some(404));

        // Paging: three upstreams, two per page, at one revision.
        for id in ["p1", "p2"] {
            r.create_upstream(v1::CreateUpstreamRequest { upstream: Some(upstream(id, up.port())) })
                .await
                .expect("create");
        }
        let page = r
            .list_upstreams(v1::ListUpstreamsRequest { page_size: 2, ..Default::default() })
            .await
            .expect("page 1")
            .into_inner();
        let ids: Vec<_> = page.items.iter().filter_map(|e| e.upstream.as_ref()).map(|u| u.id.clone()).collect();
        assert_eq!(ids, ["p1", "p2"]);
        assert!(!page.next_page_token.is_empty());
        let page2 = r
            .list_upstreams(v1::ListUpstreamsRequest {
                page_size: 2,
                page_token: page.next_page_token.clone(),
                ..Default::default()
            })
            .await
            .expect("page 2")
            .into_inner();
        let ids: Vec<_> = page2.items.iter().filter_map(|e| e.upstream.as_ref()).map(|u| u.id.clone()).collect();
        assert_eq!(
            (ids, page2.next_page_token.as_str(), page2.revision),
            (vec!["u".to_owned(), "u2".to_owned()], "", page.revision)
        );

        // Services, consumers, SSL certificates, global rules, plugin configs.
        let svc: v1::Service = from_json(json!({ "id": "s1", "upstream_id": "u" }));
        let e = r
            .create_service(v1::CreateServiceRequest { service: Some(svc.clone()) })
            .await
            .expect("service")
            .into_inner();
        let mut svc2 = svc.clone();
        svc2.description = "orders".into();
        let e = r
            .update_service(v1::UpdateServiceRequest {
                service: Some(svc2),
                expected_revision: e.meta.expect("m").revision,
            })
            .await
            .expect("update service")
            .into_inner();
        assert_eq!(
            r.get_service(v1::GetServiceRequest { id: "s1".into() })
                .await
                .expect("get")
                .into_inner()
                .service
                .map(|s| s.description),
            Some("orders".into())
        );
        assert_eq!(
            r.list_services(v1::ListServicesRequest::default()).await.expect("list").into_inner().items.len(),
            1
        );
        r.delete_service(v1::DeleteServiceRequest { id: "s1".into(), expected_revision: e.meta.expect("m").revision })
            .await
            .expect("delete service");

        let c: v1::Consumer =
            from_json(json!({ "username": "alice", "credentials": { "key_auth": { "key": "alice-secret-key" } } }));
        let e = r
            .create_consumer(v1::CreateConsumerRequest { consumer: Some(c.clone()) })
            .await
            .expect("consumer")
            .into_inner();
        let e = r
            .update_consumer(v1::UpdateConsumerRequest {
                consumer: Some(c),
                expected_revision: e.meta.expect("m").revision,
            })
            .await
            .expect("update consumer")
            .into_inner();
        assert!(r.get_consumer(v1::GetConsumerRequest { username: "alice".into() }).await.is_ok());
        assert_eq!(
            r.list_consumers(v1::ListConsumersRequest::default()).await.expect("list").into_inner().items.len(),
            1
        );
        r.delete_consumer(v1::DeleteConsumerRequest {
            username: "alice".into(),
            expected_revision: e.meta.expect("m").revision,
        })
        .await
        .expect("delete consumer");

        let ssl: v1::Ssl = from_json(json!({ "id": "a", "cert": cert, "key": key, "snis": ["a.example.com"] }));
        let e = r.create_ssl(v1::CreateSslRequest { ssl: Some(ssl.clone()) }).await.expect("ssl").into_inner();
        assert_eq!(e.ssl.as_ref().map(|s| s.key.as_str()), Some("<redacted>"));
        let mut ssl2 = e.ssl.clone().expect("ssl");
        ssl2.snis = vec!["a.example.com".into(), "b.example.com".into()];
        let e = r
            .update_ssl(v1::UpdateSslRequest { ssl: Some(ssl2), expected_revision: e.meta.expect("m").revision })
            .await
            .expect("update ssl (key kept)")
            .into_inner();
        assert!(r.get_ssl(v1::GetSslRequest { id: "a".into() }).await.is_ok());
        assert_eq!(r.list_ssls(v1::ListSslsRequest::default()).await.expect("list").into_inner().items.len(), 1);
        r.delete_ssl(v1::DeleteSslRequest { id: "a".into(), expected_revision: e.meta.expect("m").revision })
            .await
            .expect("delete ssl");

        let g: v1::GlobalRule = from_json(json!({ "id": "g1", "plugins": { "request_id": {} } }));
        let e = r
            .create_global_rule(v1::CreateGlobalRuleRequest { global_rule: Some(g.clone()) })
            .await
            .expect("global rule")
            .into_inner();
        let e = r
            .update_global_rule(v1::UpdateGlobalRuleRequest {
                global_rule: Some(g),
                expected_revision: e.meta.expect("m").revision,
            })
            .await
            .expect("update")
            .into_inner();
        assert!(r.get_global_rule(v1::GetGlobalRuleRequest { id: "g1".into() }).await.is_ok());
        assert_eq!(
            r.list_global_rules(v1::ListGlobalRulesRequest::default()).await.expect("list").into_inner().items.len(),
            1
        );
        r.delete_global_rule(v1::DeleteGlobalRuleRequest {
            id: "g1".into(),
            expected_revision: e.meta.expect("m").revision,
        })
        .await
        .expect("delete");

        let p: v1::PluginConfig = from_json(
            json!({ "id": "pc1", "labels": { "owner": "platform" }, "plugins": { "mock": { "body": "pc" } } }),
        );
        let e = r
            .create_plugin_config(v1::CreatePluginConfigRequest { plugin_config: Some(p.clone()) })
            .await
            .expect("plugin config")
            .into_inner();
        let e = r
            .update_plugin_config(v1::UpdatePluginConfigRequest {
                plugin_config: Some(p),
                expected_revision: e.meta.expect("m").revision,
            })
            .await
            .expect("update")
            .into_inner();
        assert!(r.get_plugin_config(v1::GetPluginConfigRequest { id: "pc1".into() }).await.is_ok());
        assert_eq!(
            r.list_plugin_configs(v1::ListPluginConfigsRequest::default())
                .await
                .expect("list")
                .into_inner()
                .items
                .len(),
            1
        );
        r.delete_plugin_config(v1::DeletePluginConfigRequest {
            id: "pc1".into(),
            expected_revision: e.meta.expect("m").revision,
        })
        .await
        .expect("delete");
    });
    // Every write went to the file, which still loads.
    let text = std::fs::read_to_string(&gw.config).expect("config");
    let (config, _) = pingora_config::load_str::<v1::Config>(&text, "config.yaml").expect("the written file loads");
    assert_eq!(config.upstreams.len(), 4, "{text}");
    assert!(std::fs::read_dir(gw.dir.path().join("config.yaml.versions")).expect("versions").count() >= 10);
}

#[test]
fn rejected_writes_say_why_and_change_nothing() {
    let up = Upstream::start("origin");
    let gw = start(&up, "");
    let before = std::fs::read_to_string(&gw.config).expect("config");
    rt().block_on(async {
        let mut api = api(&gw, None).await;
        // A rule of the resource itself: INVALID_ARGUMENT with the field path.
        let bad = route("bad", "no-slash", "u");
        let e = api.res.create_route(v1::CreateRouteRequest { route: Some(bad) }).await.expect_err("invalid");
        assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
        let br = e.get_details_bad_request().expect("BadRequest details");
        assert_eq!(br.field_violations[0].field, "routes[1].uris[0]", "{br:?}");
        assert!(e.message().contains("routes[1].uris[0]"), "{}", e.message());
        // A reference to nothing: FAILED_PRECONDITION.
        let e = api
            .res
            .create_route(v1::CreateRouteRequest { route: Some(route("r", "/x", "missing")) })
            .await
            .expect_err("ref");
        assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
        assert_eq!(e.get_details_bad_request().expect("details").field_violations[0].field, "routes[1].upstream_id");
        // The message says what is missing, not who refers to it.
        assert!(e.message().contains("does not exist") && !e.message().contains("referred"), "{}", e.message());
        // Deleting a referenced upstream: FAILED_PRECONDITION naming the route.
        let u = api.res.get_upstream(v1::GetUpstreamRequest { id: "u".into() }).await.expect("get").into_inner();
        let rev = u.meta.expect("meta").revision;
        let e = api
            .res
            .delete_upstream(v1::DeleteUpstreamRequest { id: "u".into(), expected_revision: rev })
            .await
            .expect_err("referenced");
        assert_eq!(e.code(), Code::FailedPrecondition);
        assert!(e.message().contains("route `base`"), "{}", e.message());
        assert!(e.get_details_precondition_failure().is_some());
        // A stale revision: ABORTED.
        let e = api
            .res
            .update_upstream(v1::UpdateUpstreamRequest {
                upstream: Some(upstream("u", up.port())),
                expected_revision: rev + 7,
            })
            .await
            .expect_err("stale");
        assert_eq!(e.code(), Code::Aborted);
        let e = api
            .cfg
            .apply_config(v1::ApplyConfigRequest {
                config: Some(v1::Config::default()),
                expected_revision: rev + 7,
                dry_run: false,
            })
            .await
            .expect_err("stale apply");
        assert_eq!(e.code(), Code::Aborted);
        let status = api.st.get_status(v1::GetStatusRequest {}).await.expect("status").into_inner();
        assert_eq!(status.applied_revision, rev);
    });
    assert_eq!(std::fs::read_to_string(&gw.config).expect("config"), before);
    assert_eq!(get(&client(), &gw.url("/base"), &[]).body, "origin");
}

#[test]
fn concurrent_writers_lose_no_update() {
    let up = Upstream::start("origin");
    let gw = start(&up, "");
    const WRITERS: usize = 6;
    const EACH: usize = 5;
    rt().block_on(async {
        let mut tasks = Vec::new();
        for _ in 0..WRITERS {
            let mut api = api(&gw, None).await;
            tasks.push(tokio::spawn(async move {
                let mut done = 0;
                let mut conflicts = 0;
                while done < EACH {
                    let e = api
                        .res
                        .get_upstream(v1::GetUpstreamRequest { id: "u".into() })
                        .await
                        .expect("get")
                        .into_inner();
                    let mut u = e.upstream.expect("upstream");
                    let n: u64 = u.labels.get("count").and_then(|c| c.parse().ok()).unwrap_or(0);
                    u.labels.insert("count".into(), (n + 1).to_string());
                    let req = v1::UpdateUpstreamRequest {
                        upstream: Some(u),
                        expected_revision: e.meta.expect("meta").revision,
                    };
                    match api.res.update_upstream(req).await {
                        Ok(_) => done += 1,
                        Err(s) if s.code() == Code::Aborted => conflicts += 1,
                        Err(s) => panic!("update: {s:?}"),
                    }
                }
                conflicts
            }));
        }
        let mut conflicts = 0;
        for t in tasks {
            conflicts += t.await.expect("task");
        }
        let mut api = api(&gw, None).await;
        let u = api.res.get_upstream(v1::GetUpstreamRequest { id: "u".into() }).await.expect("get").into_inner();
        let count = u.upstream.expect("u").labels.get("count").cloned();
        assert_eq!(count, Some((WRITERS * EACH).to_string()), "after {conflicts} conflicts");
    });
}

#[test]
fn api_keys_and_roles() {
    let up = Upstream::start("origin");
    let gw = start(&up, &keys());
    rt().block_on(async {
        let mut anon = api(&gw, None).await;
        let e = anon.res.list_routes(v1::ListRoutesRequest::default()).await.expect_err("no key");
        assert_eq!(e.code(), Code::Unauthenticated);
        let mut wrong = api(&gw, Some("not-a-key-0123456789")).await;
        assert_eq!(
            wrong.res.list_routes(v1::ListRoutesRequest::default()).await.expect_err("bad key").code(),
            Code::Unauthenticated
        );

        let mut viewer = api(&gw, Some(VIEWER_KEY)).await;
        assert_eq!(
            viewer
                .res
                .list_routes(v1::ListRoutesRequest::default())
                .await
                .expect("viewer reads")
                .into_inner()
                .items
                .len(),
            1
        );
        let e =
            viewer.res.create_upstream(v1::CreateUpstreamRequest { upstream: Some(upstream("v", up.port())) }).await;
        assert_eq!(e.expect_err("viewer writes").code(), Code::PermissionDenied);
        let exported = viewer.cfg.export_config(v1::ExportConfigRequest {}).await.expect("export").into_inner();
        let mut config = exported.config.expect("config");
        config.upstreams.push(upstream("v", up.port()));
        let dry = v1::ApplyConfigRequest {
            config: Some(config.clone()),
            expected_revision: exported.revision,
            dry_run: true,
        };
        let diff = viewer.cfg.apply_config(dry).await.expect("viewer dry run").into_inner();
        assert_eq!(diff.diff.expect("diff").changes.len(), 1);
        let real =
            v1::ApplyConfigRequest { config: Some(config), expected_revision: exported.revision, dry_run: false };
        assert_eq!(
            viewer.cfg.apply_config(real.clone()).await.expect_err("viewer applies").code(),
            Code::PermissionDenied
        );

        let mut editor = api(&gw, Some(EDITOR_KEY)).await;
        editor.cfg.apply_config(real).await.expect("editor applies");
        editor
            .res
            .create_upstream(v1::CreateUpstreamRequest { upstream: Some(upstream("w", up.port())) })
            .await
            .expect("editor writes");

        // Health needs no key.
        let mut health = tonic_health::pb::health_client::HealthClient::new(channel(&gw).await);
        let h = health.check(tonic_health::pb::HealthCheckRequest { service: String::new() }).await.expect("health");
        assert_eq!(h.into_inner().status, tonic_health::pb::health_check_response::ServingStatus::Serving as i32);
    });
    // Metrics need no key either.
    let m = get(&client(), &format!("{}/metrics", gw.admin_url()), &[]);
    assert_eq!((m.status, m.header("content-type").as_str()), (200, "text/plain; version=0.0.4"));
    assert!(m.body.contains("pingora_config_admin_writes_total{outcome=\"applied\"} 2"), "{}", m.body);
    assert!(m.body.contains("pingora_config_store_revision 3"), "{}", m.body);
}

#[test]
fn a_keyless_admin_listener_refuses_to_start_off_loopback() {
    let dir = tempfile::tempdir().expect("dir");
    let config = crate::harness::write_file(dir.path(), "config.yaml", "routes: []\n");
    let boot = crate::harness::write_file(
        dir.path(),
        "gateway.yaml",
        &format!(
            "listeners: [{{ name: http, address: \"127.0.0.1:{}\" }}]\nstore: {{ file: {{ path: {} }} }}\nadmin: {{ address: \"0.0.0.0:{}\" }}\n",
            crate::harness::free_port(),
            config.display(),
            crate::harness::free_port()
        ),
    );
    let out = std::process::Command::new(crate::harness::gateway_bin())
        .args(["run", "--bootstrap"])
        .arg(&boot)
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("not a loopback address") && stderr.contains("api_keys"), "{stderr}");
}

#[test]
fn secrets_are_redacted_and_the_marker_keeps_them() {
    let up = Upstream::start("origin");
    let gw = start(&up, "");
    rt().block_on(async {
        let mut api = api(&gw, None).await;
        let c: v1::Consumer =
            from_json(json!({ "username": "bob", "credentials": { "key_auth": { "key": "bob-very-secret-key" } } }));
        let e = api
            .res
            .create_consumer(v1::CreateConsumerRequest { consumer: Some(c) })
            .await
            .expect("create")
            .into_inner();
        let mut got = e.consumer.expect("consumer");
        let key = got.credentials.as_ref().and_then(|c| c.key_auth.as_ref()).map(|k| k.key.clone());
        assert_eq!(key.as_deref(), Some("<redacted>"));
        // Read-modify-write with the marker keeps the stored key.
        got.description = "changed".into();
        api.res
            .update_consumer(v1::UpdateConsumerRequest {
                consumer: Some(got),
                expected_revision: e.meta.expect("m").revision,
            })
            .await
            .expect("update with the marker");
        let text = std::fs::read_to_string(&gw.config).expect("config");
        assert!(text.contains("bob-very-secret-key") && text.contains("changed"), "{text}");
        // Export and events never show it.
        let exported = api.cfg.export_config(v1::ExportConfigRequest {}).await.expect("export").into_inner();
        assert!(!format!("{:?}", exported.config).contains("bob-very-secret-key"));
        assert!(exported.config_hash.starts_with("sha256:"));
        // The marker where nothing is stored is rejected.
        let c: v1::Consumer =
            from_json(json!({ "username": "eve", "credentials": { "key_auth": { "key": "<redacted>" } } }));
        let e = api.res.create_consumer(v1::CreateConsumerRequest { consumer: Some(c) }).await.expect_err("marker");
        assert_eq!(e.code(), Code::InvalidArgument);
        // Applying the exported config as is changes nothing.
        let applied = api
            .cfg
            .apply_config(v1::ApplyConfigRequest {
                config: exported.config,
                expected_revision: exported.revision,
                dry_run: false,
            })
            .await
            .expect("apply the export")
            .into_inner();
        assert_eq!((applied.revision, applied.diff.expect("diff").changes.len()), (exported.revision, 0));
        let mut stream = api.ev.watch(v1::WatchRequest { start_revision: 1, ..Default::default() }).await;
        if let Ok(s) = stream.as_mut() {
            let first = tokio::time::timeout(Duration::from_secs(5), s.get_mut().message()).await;
            assert!(!format!("{first:?}").contains("bob-very-secret-key"));
        }
    });
}

#[test]
fn apply_config_dry_run_diff_then_apply_and_status() {
    let up = Upstream::start("origin");
    let gw = start(&up, "");
    rt().block_on(async {
        let mut api = api(&gw, None).await;
        let exported = api.cfg.export_config(v1::ExportConfigRequest {}).await.expect("export").into_inner();
        let mut config = exported.config.clone().expect("config");
        config.upstreams[0].nodes[0].weight = Some(5);
        config.upstreams.push(upstream("added", up.port()));
        config.routes.clear();
        let req = v1::ApplyConfigRequest {
            config: Some(config.clone()),
            expected_revision: exported.revision,
            dry_run: true,
        };
        let dry = api.cfg.apply_config(req).await.expect("dry run").into_inner();
        assert_eq!(dry.revision, exported.revision);
        let changes = dry.diff.expect("diff").changes;
        use v1::resource_change::Type;
        let summary: Vec<_> = changes.iter().map(|c| (c.kind, c.id.as_str(), c.r#type)).collect();
        assert_eq!(
            summary,
            [
                (v1::resource::Kind::Route as i32, "base", Type::Removed as i32),
                (v1::resource::Kind::Upstream as i32, "added", Type::Added as i32),
                (v1::resource::Kind::Upstream as i32, "u", Type::Changed as i32),
            ]
        );
        let field = &changes[2].fields[0];
        assert_eq!(
            (field.path.as_str(), field.old_value.as_str(), field.new_value.as_str()),
            ("nodes[0].weight", "", "5")
        );
        // Nothing written by the dry run.
        assert_eq!(http_get_raw(gw.port, "/base", "localhost").map(|r| r.0), Some(200));

        let req = v1::ApplyConfigRequest { config: Some(config), expected_revision: exported.revision, dry_run: false };
        let applied = api.cfg.apply_config(req).await.expect("apply").into_inner();
        assert_eq!(applied.revision, exported.revision + 1);
        assert_eq!(http_get_raw(gw.port, "/base", "localhost").map(|r| r.0), Some(404));

        let status = api.st.get_status(v1::GetStatusRequest {}).await.expect("status").into_inner();
        let now = api.cfg.export_config(v1::ExportConfigRequest {}).await.expect("export").into_inner();
        assert_eq!(
            (status.applied_revision, status.config_hash.as_str()),
            (applied.revision, now.config_hash.as_str())
        );
        let store = status.store.expect("store");
        assert!(store.connected && store.kind == v1::store_status::Kind::File as i32);
        assert!(status.upstreams.iter().any(|u| u.upstream_id == "added" && u.nodes.iter().all(|n| n.healthy)));
        let nodes = api.st.list_nodes(v1::ListNodesRequest {}).await.expect("nodes").into_inner().nodes;
        assert_eq!(nodes.len(), 1);

        // ValidateConfig reports, it does not raise.
        let mut bad = v1::Config::default();
        bad.routes.push(route("x", "/x", "nothing"));
        let v = api
            .cfg
            .validate_config(v1::ValidateConfigRequest { config: Some(bad) })
            .await
            .expect("validate")
            .into_inner();
        assert!(!v.valid && v.violations[0].path == "routes[0].upstream_id" && v.violations[0].rule == "ref", "{v:?}");
    });
}

async fn next_event(stream: &mut tonic::Streaming<v1::Event>) -> v1::Event {
    tokio::time::timeout(Duration::from_secs(10), stream.message())
        .await
        .expect("an event in time")
        .expect("the stream")
        .expect("an event")
}

fn resource(e: &v1::Event) -> (i64, String, i32) {
    match &e.payload {
        Some(v1::event::Payload::Resource(r)) => (e.revision, r.id.clone(), r.r#type),
        other => panic!("not a resource event: {other:?}"),
    }
}

#[test]
fn watch_replays_from_a_revision_and_asks_to_resync_when_too_old() {
    let up = Upstream::start("origin");
    let gw = start(&up, "");
    rt().block_on(async {
        let mut api = api(&gw, None).await;
        let listing = api.res.list_routes(v1::ListRoutesRequest::default()).await.expect("list").into_inner();
        let from = listing.revision + 1;
        let mut live = api
            .ev
            .watch(v1::WatchRequest { start_revision: from, ..Default::default() })
            .await
            .expect("watch")
            .into_inner();
        let e = api
            .res
            .create_upstream(v1::CreateUpstreamRequest { upstream: Some(upstream("w1", up.port())) })
            .await
            .expect("create")
            .into_inner();
        let rev1 = e.meta.expect("meta").revision;
        let got = next_event(&mut live).await;
        assert_eq!(resource(&got), (rev1, "w1".into(), v1::resource_event::Type::Put as i32));
        drop(live);

        // Changes while disconnected, then resume after the last seen.
        let mut u = upstream("w1", up.port());
        u.description = "second".into();
        let e = api
            .res
            .update_upstream(v1::UpdateUpstreamRequest { upstream: Some(u), expected_revision: rev1 })
            .await
            .expect("update")
            .into_inner();
        let rev2 = e.meta.expect("meta").revision;
        api.res.create_route(v1::CreateRouteRequest { route: Some(route("w", "/w", "w1")) }).await.expect("route");
        let mut resumed = api
            .ev
            .watch(v1::WatchRequest {
                start_revision: rev1 + 1,
                resource_kinds: vec![v1::resource::Kind::Upstream as i32],
                ..Default::default()
            })
            .await
            .expect("watch")
            .into_inner();
        let got = next_event(&mut resumed).await;
        assert_eq!(resource(&got), (rev2, "w1".into(), v1::resource_event::Type::Put as i32));
        let Some(v1::event::Payload::Resource(r)) = &got.payload else { unreachable!() };
        assert!(r.old_value.is_some() && r.new_value.is_some());
        // The route event is filtered out; the next upstream one arrives.
        let e = api.res.get_upstream(v1::GetUpstreamRequest { id: "w1".into() }).await.expect("get").into_inner();
        api.res
            .delete_route(v1::DeleteRouteRequest { id: "w".into(), expected_revision: rev2 + 1 })
            .await
            .expect("delete route");
        api.res
            .delete_upstream(v1::DeleteUpstreamRequest {
                id: "w1".into(),
                expected_revision: e.meta.expect("m").revision,
            })
            .await
            .expect("delete");
        let got = next_event(&mut resumed).await;
        assert_eq!(resource(&got).1, "w1");
        assert_eq!(resource(&got).2, v1::resource_event::Type::Delete as i32);

        // History from before this process started is not held.
        let mut old = api
            .ev
            .watch(v1::WatchRequest { start_revision: 1, ..Default::default() })
            .await
            .expect("watch")
            .into_inner();
        let got = next_event(&mut old).await;
        assert!(matches!(got.payload, Some(v1::event::Payload::ResyncRequired(_))), "{got:?}");
        let end = tokio::time::timeout(Duration::from_secs(5), old.message()).await.expect("the stream ends");
        assert!(matches!(end, Ok(None)), "{end:?}");
    });
}

/// One gRPC message in grpc-web framing.
fn grpc_web_frame(msg: &impl Message) -> Vec<u8> {
    let body = msg.encode_to_vec();
    let mut out = vec![0u8];
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(&body);
    out
}

/// The data frame and the trailers of a grpc-web response.
fn grpc_web_parse(bytes: &[u8]) -> (Vec<u8>, String) {
    let (mut data, mut trailers, mut i) = (Vec::new(), String::new(), 0);
    while i + 5 <= bytes.len() {
        let flag = bytes[i];
        let len = u32::from_be_bytes([bytes[i + 1], bytes[i + 2], bytes[i + 3], bytes[i + 4]]) as usize;
        let frame = &bytes[i + 5..i + 5 + len];
        if flag & 0x80 != 0 {
            trailers.push_str(&String::from_utf8_lossy(frame));
        } else {
            data.extend_from_slice(frame);
        }
        i += 5 + len;
    }
    (data, trailers)
}

#[test]
fn grpc_web_over_http1_and_cors() {
    let up = Upstream::start("origin");
    let gw = start(&up, &keys());
    let c = reqwest::blocking::Client::builder().http1_only().build().expect("client");
    let call = |method: &str, body: Vec<u8>| {
        let resp = c
            .post(format!("{}/pingora_config.v1.ResourceService/{method}", gw.admin_url()))
            .header("content-type", "application/grpc-web+proto")
            .header("x-grpc-web", "1")
            .header("authorization", format!("Bearer {EDITOR_KEY}"))
            .header("origin", "https://admin.example.com")
            .body(body)
            .send()
            .expect("grpc-web call");
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.version(), reqwest::Version::HTTP_11);
        assert_eq!(
            resp.headers().get("access-control-allow-origin").and_then(|v| v.to_str().ok()),
            Some("https://admin.example.com")
        );
        let header_status =
            resp.headers().get("grpc-status").and_then(|v| v.to_str().ok()).map(|s| format!("grpc-status:{s}"));
        let (data, trailers) = grpc_web_parse(&resp.bytes().expect("body"));
        // A trailers-only response (an error) carries its status in the headers.
        (data, header_status.unwrap_or(trailers))
    };
    let (data, trailers) = call(
        "CreateUpstream",
        grpc_web_frame(&v1::CreateUpstreamRequest { upstream: Some(upstream("web", up.port())) }),
    );
    assert!(trailers.contains("grpc-status:0"), "{trailers}");
    let entry = v1::UpstreamEntry::decode(&data[..]).expect("entry");
    assert_eq!(entry.upstream.map(|u| u.id), Some("web".into()));
    let (data, _) = call("GetUpstream", grpc_web_frame(&v1::GetUpstreamRequest { id: "web".into() }));
    assert_eq!(v1::UpstreamEntry::decode(&data[..]).expect("entry").upstream.map(|u| u.id), Some("web".into()));
    let (data, _) = call("ListUpstreams", grpc_web_frame(&v1::ListUpstreamsRequest::default()));
    assert_eq!(v1::ListUpstreamsResponse::decode(&data[..]).expect("list").items.len(), 2);
    let (_, trailers) = call("GetUpstream", grpc_web_frame(&v1::GetUpstreamRequest { id: "nope".into() }));
    assert!(trailers.contains("grpc-status:5"), "{trailers}");

    let preflight = |origin: &str| {
        c.request(reqwest::Method::OPTIONS, format!("{}/pingora_config.v1.ResourceService/ListRoutes", gw.admin_url()))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "content-type,x-grpc-web,authorization")
            .send()
            .expect("preflight")
    };
    let ok = preflight("https://admin.example.com");
    assert_eq!(
        ok.headers().get("access-control-allow-origin").and_then(|v| v.to_str().ok()),
        Some("https://admin.example.com")
    );
    let allowed =
        ok.headers().get("access-control-allow-headers").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    assert!(allowed.contains("authorization") && allowed.contains("x-grpc-web"), "{allowed}");
    let denied = preflight("https://evil.example.com");
    assert!(denied.headers().get("access-control-allow-origin").is_none());
}

#[test]
fn server_reflection_lists_the_services() {
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    let up = Upstream::start("origin");
    let gw = start(&up, &keys());
    rt().block_on(async {
        let auth = Auth(Some(format!("Bearer {VIEWER_KEY}").parse().expect("metadata")));
        let mut client = ServerReflectionClient::with_interceptor(channel(&gw).await, auth);
        let req = tonic_reflection::pb::v1::ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        };
        let mut stream =
            client.server_reflection_info(tokio_stream::iter([req])).await.expect("reflection").into_inner();
        let resp = stream.message().await.expect("stream").expect("response");
        let Some(MessageResponse::ListServicesResponse(list)) = resp.message_response else { panic!("{resp:?}") };
        let names: Vec<_> = list.service.iter().map(|s| s.name.as_str()).collect();
        assert!(
            names.contains(&"pingora_config.v1.ResourceService") && names.contains(&"pingora_config.v1.ConfigService"),
            "{names:?}"
        );
    });
}

#[test]
fn revisions_survive_a_restart_and_hand_edits_are_revisions_too() {
    let up = Upstream::start("origin");
    let mut gw = start(&up, "");
    let (rev_u, rev_r) = rt().block_on(async {
        let mut api = api(&gw, None).await;
        let e = api
            .res
            .create_upstream(v1::CreateUpstreamRequest { upstream: Some(upstream("k", up.port())) })
            .await
            .expect("create")
            .into_inner();
        let r = api.res.get_route(v1::GetRouteRequest { id: "base".into() }).await.expect("get").into_inner();
        (e.meta.expect("m"), r.meta.expect("m"))
    });
    gw.restart();
    gw.wait_admin();
    rt().block_on(async {
        let mut api = api(&gw, None).await;
        let e = api.res.get_upstream(v1::GetUpstreamRequest { id: "k".into() }).await.expect("get").into_inner();
        assert_eq!(e.meta.expect("meta"), rev_u);
        let r = api.res.get_route(v1::GetRouteRequest { id: "base".into() }).await.expect("get").into_inner();
        assert_eq!(r.meta.expect("meta"), rev_r);
        // An edit by hand: the watcher applies it as the next revision, and
        // only the resource that changed gets it.
        let watch = v1::WatchRequest { start_revision: rev_u.revision + 1, ..Default::default() };
        let mut events = api.ev.watch(watch).await.expect("watch").into_inner();
        let p = up.port();
        gw.write_config(&format!(
            "{}  - {{ id: k, nodes: [{{ host: 127.0.0.1, port: {p} }}] }}\n  - {{ id: hand, nodes: [{{ host: 127.0.0.1, port: {p} }}] }}\n",
            base_config(&up)
        ));
        let mut found = None;
        for _ in 0..100 {
            if let Ok(e) = api.res.get_upstream(v1::GetUpstreamRequest { id: "hand".into() }).await {
                found = e.into_inner().meta;
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let meta = found.unwrap_or_else(|| panic!("the edit was not applied:\n{}", gw.log()));
        assert_eq!(meta.revision, rev_u.revision + 1);
        assert!(meta.update_time.is_none());
        let e = api.res.get_upstream(v1::GetUpstreamRequest { id: "k".into() }).await.expect("get").into_inner();
        assert_eq!(e.meta.expect("meta"), rev_u);
        // Watchers see the edit like any write.
        let got = next_event(&mut events).await;
        assert_eq!(resource(&got), (meta.revision, "hand".into(), v1::resource_event::Type::Put as i32));
    });
}

/// Updates upstream `u` with weights `first..` as fast as it can, logging
/// each weight before it is sent, until a call fails (the gateway died).
fn write_weights(url: String, port: u16, first: u32, log: std::sync::Arc<std::sync::Mutex<Vec<Option<u32>>>>) {
    rt().block_on(async {
        let ch = Channel::from_shared(url).expect("url").connect().await.expect("connect");
        let mut res = ResourceServiceClient::new(ch);
        for w in first.. {
            let Ok(e) = res.get_upstream(v1::GetUpstreamRequest { id: "u".into() }).await else { break };
            let mut u = upstream("u", port);
            u.nodes[0].weight = Some(w);
            log.lock().expect("lock").push(Some(w));
            let rev = e.into_inner().meta.expect("m").revision;
            let req = v1::UpdateUpstreamRequest { upstream: Some(u), expected_revision: rev };
            if res.update_upstream(req).await.is_err() {
                break;
            }
        }
    })
}

#[test]
fn a_crash_in_the_middle_of_writes_leaves_a_whole_file() {
    let up = Upstream::start("origin");
    let mut gw = start(&up, "");
    let written = std::sync::Arc::new(std::sync::Mutex::new(vec![None]));
    // SIGKILL three times at different moments of a stream of writes.
    for (round, after_ms) in [(0u32, 350u64), (1, 500), (2, 650)] {
        let (log, url, port) = (written.clone(), gw.admin_url(), up.port());
        let writer = std::thread::spawn(move || write_weights(url, port, 1 + round * 100_000, log));
        std::thread::sleep(Duration::from_millis(after_ms));
        gw.kill();
        writer.join().expect("writer");
        let text = std::fs::read_to_string(&gw.config).expect("config");
        let (config, _) =
            pingora_config::load_str::<v1::Config>(&text, "config.yaml").expect("the file parses after a crash");
        let weight = config.upstreams[0].nodes[0].weight;
        let written = written.lock().expect("lock").clone();
        assert!(written.len() > 3, "only {} writes", written.len());
        assert!(written.contains(&weight), "round {round}: weight {weight:?} was never written");
        assert_eq!(config.routes.len(), 1);
        // The gateway starts on it and serves what the file says.
        gw.restart();
        gw.wait_admin();
        rt().block_on(async {
            let mut api = api(&gw, None).await;
            let e = api.res.get_upstream(v1::GetUpstreamRequest { id: "u".into() }).await.expect("get").into_inner();
            assert_eq!(e.upstream.expect("u").nodes[0].weight, weight);
        });
    }
}

/// A node starts healthy: one that fails its first checks, in an upstream
/// created while a watcher listens, is a transition the watcher must see.
#[test]
fn watch_reports_a_new_upstream_whose_node_fails_from_the_start() {
    let up = Upstream::start("origin");
    let down = Upstream::start("down");
    down.set_healthy(false);
    let gw = start(&up, "");
    rt().block_on(async {
        let mut api = api(&gw, None).await;
        let req = v1::WatchRequest { kinds: vec![v1::event::Kind::Health as i32], ..Default::default() };
        let mut stream = api.ev.watch(req).await.expect("watch").into_inner();
        // Let the health poller take its first view (it polls every 0.5s).
        tokio::time::sleep(Duration::from_millis(1200)).await;
        let checked: v1::Upstream = from_json(json!({
            "id": "born-down",
            "nodes": [{ "host": "127.0.0.1", "port": down.port() }],
            "health_check": { "active": { "type": "HTTP", "path": "/healthz", "interval": "0.1s", "timeout": "0.1s", "unhealthy_threshold": 1 } }
        }));
        api.res.create_upstream(v1::CreateUpstreamRequest { upstream: Some(checked) }).await.expect("create");
        let got = next_event(&mut stream).await;
        let Some(v1::event::Payload::Health(h)) = got.payload else { panic!("{got:?}") };
        assert_eq!((h.upstream_id.as_str(), h.node, h.healthy), ("born-down", format!("127.0.0.1:{}", down.port()), false));
    });
}

#[test]
fn watch_streams_upstream_health_transitions() {
    let up = Upstream::start("origin");
    let config = format!(
        "upstreams:\n  - id: checked\n    nodes: [{{ host: 127.0.0.1, port: {} }}]\n    health_check:\n      active: {{ type: HTTP, path: /healthz, interval: 0.2s, timeout: 0.1s, healthy_threshold: 1, unhealthy_threshold: 1 }}\n",
        up.port()
    );
    let gw = Gateway::start_with(&config, Options::default());
    gw.wait_admin();
    rt().block_on(async {
        let mut api = api(&gw, None).await;
        let req = v1::WatchRequest { kinds: vec![v1::event::Kind::Health as i32], ..Default::default() };
        let mut stream = api.ev.watch(req).await.expect("watch").into_inner();
        // Let the first checks run, then fail them.
        tokio::time::sleep(Duration::from_millis(800)).await;
        up.set_healthy(false);
        let got = next_event(&mut stream).await;
        let Some(v1::event::Payload::Health(h)) = got.payload else { panic!("{got:?}") };
        assert_eq!((h.upstream_id.as_str(), h.healthy), ("checked", false));
        assert_eq!(h.node, format!("127.0.0.1:{}", up.port()));
        assert_eq!(h.source, v1::health_event::Source::Active as i32);
        up.set_healthy(true);
        let got = next_event(&mut stream).await;
        assert!(matches!(got.payload, Some(v1::event::Payload::Health(h)) if h.healthy));
    });
}

#[test]
fn a_graceful_upgrade_hands_the_admin_listener_over() {
    let up = Upstream::start("origin");
    let old = start(&up, "");
    let started = |gw: &Gateway| {
        rt().block_on(async {
            let ch = Channel::from_shared(gw.admin_url()).ok()?.connect().await.ok()?;
            let status = StatusServiceClient::new(ch).get_status(v1::GetStatusRequest {}).await.ok()?;
            status.into_inner().start_time
        })
    };
    let before = started(&old).expect("status of the old process");
    // The new process cannot bind the admin address yet: the old one holds it
    // until SIGQUIT, and the new one binds it as soon as it is let go.
    let _new = old.start_upgrade();
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(started(&old), Some(before));
    old.signal("QUIT");
    old.wait_for("the new process on the admin port", Duration::from_secs(10), || {
        started(&old).is_some_and(|t| t != before)
    });
}

#[test]
fn the_admin_listener_serves_grpc_and_metrics_over_tls() {
    use tonic::transport::{Certificate, ClientTlsConfig};
    let up = Upstream::start("origin");
    let pki = Pki::new();
    let (cert, key) = pki.leaf("admin", &["localhost"]);
    let extra = format!(
        "{}  tls:\n    certificate:\n      cert: {}      key: {}",
        keys(),
        crate::harness::yaml_block(&cert, 8),
        crate::harness::yaml_block(&key, 8)
    );
    let gw = start(&up, &extra);
    rt().block_on(async {
        let tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&pki.ca)).domain_name("localhost");
        let ch = Channel::from_shared(format!("https://localhost:{}", gw.admin_port))
            .expect("url")
            .tls_config(tls)
            .expect("tls")
            .connect()
            .await
            .expect("connect over TLS");
        let auth = Auth(Some(format!("Bearer {VIEWER_KEY}").parse().expect("metadata")));
        let mut res = ResourceServiceClient::with_interceptor(ch, auth);
        let list = res.list_routes(v1::ListRoutesRequest::default()).await.expect("list over TLS").into_inner();
        assert_eq!(list.items.len(), 1);
    });
    let ca = reqwest::Certificate::from_pem(pki.ca.as_bytes()).expect("ca");
    let c = reqwest::blocking::Client::builder().add_root_certificate(ca).build().expect("client");
    let m = c.get(format!("https://localhost:{}/metrics", gw.admin_port)).send().expect("metrics over TLS");
    assert_eq!(m.status(), 200);
    // Plaintext is refused.
    assert!(http_get_raw(gw.admin_port, "/metrics", "localhost").is_none_or(|(s, _)| s != 200));
}

#[test]
fn the_admin_listener_serves_the_built_web_ui_at_ui() {
    let up = Upstream::start("u");
    let ui = tempfile::tempdir().expect("dir");
    std::fs::create_dir(ui.path().join("assets")).expect("assets");
    std::fs::write(ui.path().join("index.html"), "<html>pingora-config admin</html>").expect("index");
    std::fs::write(ui.path().join("assets/app.js"), "console.log(1)").expect("js");
    let gw = start(&up, &format!("  ui_dir: {}\n", ui.path().display()));
    let c = reqwest::blocking::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client");
    let get = |p: &str| c.get(format!("{}{p}", gw.admin_url())).send().expect("get");
    let root = get("/");
    assert!(root.status().is_redirection());
    assert_eq!(root.headers().get("location").and_then(|v| v.to_str().ok()), Some("/ui/"));
    let index = get("/ui/");
    assert_eq!(index.status().as_u16(), 200);
    assert_eq!(index.text().expect("body"), "<html>pingora-config admin</html>");
    let js = get("/ui/assets/app.js");
    assert_eq!(js.status().as_u16(), 200);
    assert!(js.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").contains("javascript"));
    // The UI routes itself: an unknown path under /ui/ is the app.
    assert_eq!(get("/ui/routes/orders").text().expect("body"), "<html>pingora-config admin</html>");
    // No key is needed for the static files; the API still wants one.
    let m = get("/metrics");
    assert_eq!(m.status().as_u16(), 200);
}

#[test]
fn without_a_built_ui_the_admin_listener_serves_the_api_alone() {
    let up = Upstream::start("u");
    let gw = start(&up, "  ui_dir: /nonexistent/ui\n");
    let r = reqwest::blocking::Client::new().get(format!("{}/ui/", gw.admin_url())).send().expect("get");
    assert_ne!(r.status().as_u16(), 200);
    assert!(gw.log().contains("no web UI at /nonexistent/ui"), "{}", gw.log());
}
