//! `ResourceService`: get, list, create, update and delete for the seven
//! kinds of resource, written once over [`Kind`] and instantiated per kind.

use std::collections::BTreeMap;
use std::sync::Arc;

use pingora_config::v1;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tonic::{Request, Response, Status};

use crate::admin::edit::Edit;
use crate::admin::json;
use crate::admin::store::{Head, Meta, Metas, Stored};
use crate::admin::write::{Writer, Written, error};
use crate::shared::{SharedConfig, SharedResource};

/// One kind of resource: where it lives in the config and how it is keyed.
pub trait Kind:
    Clone + PartialEq + Default + prost::Name + Serialize + DeserializeOwned + Send + Sync + 'static
{
    const KIND: v1::resource::Kind;
    /// The collection of `Config`, as in violation paths.
    const COLLECTION: &'static str;
    /// What it is called in messages.
    const LABEL: &'static str;
    fn id(&self) -> &str;
    fn labels(&self) -> Option<&BTreeMap<String, String>>;
    fn items(config: &SharedConfig) -> &Vec<Arc<Self>>;
    fn items_mut(config: &mut SharedConfig) -> &mut Vec<Arc<Self>>;
    /// The collection in the proto config.
    fn proto_items_mut(config: &mut v1::Config) -> &mut Vec<Self>;
    fn into_value(self) -> v1::resource::Value;
    /// The resource when `value` is of this kind.
    fn from_value(value: v1::resource::Value) -> Option<Self>;
    fn into_shared(r: Arc<Self>) -> SharedResource;
    /// The resource when `r` is of this kind.
    fn from_shared(r: SharedResource) -> Option<Arc<Self>>;
}

macro_rules! kind {
    ($ty:ident, $kind:ident, $coll:ident, $name:literal, $id:ident $(, $labels:ident)?) => {
        impl Kind for v1::$ty {
            const KIND: v1::resource::Kind = v1::resource::Kind::$kind;
            const COLLECTION: &'static str = stringify!($coll);
            const LABEL: &'static str = $name;
            fn id(&self) -> &str {
                &self.$id
            }
            fn labels(&self) -> Option<&BTreeMap<String, String>> {
                $(return Some(&self.$labels);)?
                #[allow(unreachable_code)]
                None
            }
            fn items(config: &SharedConfig) -> &Vec<Arc<Self>> {
                &config.$coll
            }
            fn items_mut(config: &mut SharedConfig) -> &mut Vec<Arc<Self>> {
                &mut config.$coll
            }
            fn proto_items_mut(config: &mut v1::Config) -> &mut Vec<Self> {
                &mut config.$coll
            }
            fn into_value(self) -> v1::resource::Value {
                v1::resource::Value::$ty(self)
            }
            fn from_value(value: v1::resource::Value) -> Option<Self> {
                match value {
                    v1::resource::Value::$ty(r) => Some(r),
                    _ => None,
                }
            }
            fn into_shared(r: Arc<Self>) -> SharedResource {
                SharedResource::$ty(r)
            }
            fn from_shared(r: SharedResource) -> Option<Arc<Self>> {
                match r {
                    SharedResource::$ty(r) => Some(r),
                    _ => None,
                }
            }
        }
    };
}

kind!(Route, Route, routes, "route", id, labels);
kind!(Service, Service, services, "service", id, labels);
kind!(Upstream, Upstream, upstreams, "upstream", id, labels);
kind!(Consumer, Consumer, consumers, "consumer", username, labels);
kind!(Ssl, Ssl, ssls, "SSL certificate", id, labels);
kind!(GlobalRule, GlobalRule, global_rules, "global rule", id);
kind!(PluginConfig, PluginConfig, plugin_configs, "plugin config", id, labels);

fn meta_of<R: Kind>(metas: &Metas, id: &str) -> v1::ResourceMeta {
    metas.get(&(R::KIND, id.to_owned())).map(Meta::to_proto).unwrap_or_default()
}

fn not_found<R: Kind>(id: &str) -> Status {
    Status::not_found(format!("there is no {} `{id}`", R::LABEL))
}

fn check_id(id: &str) -> Result<(), Status> {
    if id.is_empty() {
        return Err(error(
            tonic::Code::InvalidArgument,
            &[v1::Violation { path: "id".into(), rule: "required".into(), message: "an id is required".into() }],
            None,
        ));
    }
    Ok(())
}

/// The resource and its metadata, secrets redacted.
pub fn get<R: Kind>(stored: &Stored, id: &str) -> Result<(R, v1::ResourceMeta), Status> {
    check_id(id)?;
    let r = R::items(&stored.config).iter().find(|r| r.id() == id).ok_or_else(|| not_found::<R>(id))?;
    Ok((json::redact(r), meta_of::<R>(&stored.metas, id)))
}

fn matches(labels: Option<&BTreeMap<String, String>>, selector: &[v1::LabelMatch]) -> bool {
    selector.iter().all(|m| labels.and_then(|l| l.get(&m.key)).is_some_and(|v| m.value.is_empty() || *v == m.value))
}

/// One page, read at one store revision: (items, next page token, revision).
pub type Page<R> = (Vec<(R, v1::ResourceMeta)>, String, i64);

pub fn list<R: Kind>(
    writer: &Writer,
    page_size: i32,
    token: &str,
    selector: &[v1::LabelMatch],
) -> Result<Page<R>, Status> {
    if !(0..=1000).contains(&page_size) {
        return Err(error(
            tonic::Code::InvalidArgument,
            &[v1::Violation {
                path: "page_size".into(),
                rule: "lte".into(),
                message: format!("{page_size} is not within 0..=1000"),
            }],
            None,
        ));
    }
    let size = if page_size == 0 { 100 } else { page_size as usize };
    let (stored, after) = if token.is_empty() {
        (writer.store.current(), None)
    } else {
        let (rev, after) = token
            .split_once(':')
            .and_then(|(r, a)| Some((r.parse::<i64>().ok()?, a.to_owned())))
            .ok_or_else(|| Status::invalid_argument("malformed page token"))?;
        let stored = writer.store.at(rev).ok_or_else(|| {
            Status::aborted(format!("revision {rev} of this listing is no longer held: list again from the first page"))
        })?;
        (stored, Some(after))
    };
    let mut items: Vec<&R> = R::items(&stored.config)
        .iter()
        .map(|r| &**r)
        .filter(|r| after.as_deref().is_none_or(|a| r.id() > a))
        .filter(|r| matches(r.labels(), selector))
        .collect();
    items.sort_by(|a, b| a.id().cmp(b.id()));
    let more = items.len() > size;
    items.truncate(size);
    let next = match (more, items.last()) {
        (true, Some(last)) => format!("{}:{}", stored.revision, last.id()),
        _ => String::new(),
    };
    let out = items.into_iter().map(|r| (json::redact(r), meta_of::<R>(&stored.metas, r.id()))).collect();
    Ok((out, next, stored.revision))
}

/// Secrets sent back as the marker take the stored value; a marker with
/// nothing stored is a violation.
fn restore<R: Kind>(new: &R, old: Option<&R>, index: usize) -> Result<R, Status> {
    let prefix = format!("{}[{index}]", R::COLLECTION);
    let (restored, missing) = json::restore(new, old, &prefix).map_err(Status::invalid_argument)?;
    if !missing.is_empty() {
        let v: Vec<v1::Violation> = missing
            .into_iter()
            .map(|path| v1::Violation {
                path,
                rule: "secret".into(),
                message: format!("`{}` stands for a stored secret, and none is stored here", json::REDACTED),
            })
            .collect();
        return Err(error(tonic::Code::InvalidArgument, &v, None));
    }
    Ok(restored)
}

pub async fn create<R: Kind>(writer: &Writer, r: Option<R>) -> Result<(R, v1::ResourceMeta), Status> {
    let r = r.ok_or_else(|| Status::invalid_argument(format!("the {} is required", R::LABEL)))?;
    check_id(r.id())?;
    let id = r.id().to_owned();
    let key = id.clone();
    let written = writer
        .write(move |head| {
            let id = &key;
            if R::items(head.config).iter().any(|x| x.id() == id) {
                return Err(Status::already_exists(format!("{} `{id}` already exists", R::LABEL)));
            }
            let index = R::items(head.config).len();
            Ok(Edit::Put(restore::<R>(&r, None, index)?.into_value()))
        })
        .await?;
    written_back::<R>(written, &id)
}

/// The resource a create or an update put, secrets redacted, and its
/// metadata after the write.
fn written_back<R: Kind>(written: Written, id: &str) -> Result<(R, v1::ResourceMeta), Status> {
    let r = written.put.and_then(R::from_value).ok_or_else(|| Status::internal("the write put no resource"))?;
    Ok((json::redact(&r), meta_of::<R>(&written.metas, id)))
}

fn expect(head: &Head<'_>, key_kind: v1::resource::Kind, id: &str, expected: i64) -> Result<(), Status> {
    if expected < 1 {
        return Err(error(
            tonic::Code::InvalidArgument,
            &[v1::Violation {
                path: "expected_revision".into(),
                rule: "required".into(),
                message: "send the `meta.revision` of the resource as last read".into(),
            }],
            None,
        ));
    }
    let current = head.metas.get(&(key_kind, id.to_owned())).map(|m| m.revision).unwrap_or(0);
    if current != expected {
        return Err(Status::aborted(format!(
            "`{id}` changed since revision {expected} (now {current}): read it again and retry"
        )));
    }
    Ok(())
}

pub async fn update<R: Kind>(writer: &Writer, r: Option<R>, expected: i64) -> Result<(R, v1::ResourceMeta), Status> {
    let r = r.ok_or_else(|| Status::invalid_argument(format!("the {} is required", R::LABEL)))?;
    check_id(r.id())?;
    let id = r.id().to_owned();
    let key = id.clone();
    let written = writer
        .write(move |head| {
            let id = &key;
            let items = R::items(head.config);
            let index = items.iter().position(|x| x.id() == id).ok_or_else(|| not_found::<R>(id))?;
            expect(head, R::KIND, id, expected)?;
            Ok(Edit::Put(restore::<R>(&r, items.get(index).map(|o| &**o), index)?.into_value()))
        })
        .await?;
    written_back::<R>(written, &id)
}

pub async fn delete<R: Kind>(writer: &Writer, id: &str, expected: i64) -> Result<i64, Status> {
    check_id(id)?;
    let key = id.to_owned();
    let written = writer
        .write(move |head| {
            let id = key.as_str();
            if !R::items(head.config).iter().any(|x| x.id() == id) {
                return Err(not_found::<R>(id));
            }
            expect(head, R::KIND, id, expected)?;
            Ok(Edit::Remove((R::KIND, key.clone())))
        })
        .await?;
    Ok(written.revision)
}

/// The service: one instance over the shared writer.
pub struct Resources {
    pub writer: Arc<Writer>,
}

macro_rules! resource_service {
    ($(
        $ty:ident, $entry:ident, $field:ident, $idf:ident,
        $get:ident $getreq:ident,
        $list:ident $listreq:ident $listresp:ident,
        $create:ident $createreq:ident,
        $update:ident $updatereq:ident,
        $delete:ident $deletereq:ident $deleteresp:ident;
    )*) => {
        #[tonic::async_trait]
        impl v1::resource_service_server::ResourceService for Resources {
            $(
                async fn $get(&self, req: Request<v1::$getreq>) -> Result<Response<v1::$entry>, Status> {
                    let (r, meta) = get::<v1::$ty>(&self.writer.store.current(), &req.get_ref().$idf)?;
                    Ok(Response::new(v1::$entry { $field: Some(r), meta: Some(meta) }))
                }
                async fn $list(&self, req: Request<v1::$listreq>) -> Result<Response<v1::$listresp>, Status> {
                    let q = req.get_ref();
                    let (items, next_page_token, revision) =
                        list::<v1::$ty>(&self.writer, q.page_size, &q.page_token, &q.label_selector)?;
                    let items = items.into_iter().map(|(r, meta)| v1::$entry { $field: Some(r), meta: Some(meta) }).collect();
                    Ok(Response::new(v1::$listresp { items, next_page_token, revision }))
                }
                async fn $create(&self, req: Request<v1::$createreq>) -> Result<Response<v1::$entry>, Status> {
                    let (r, meta) = create::<v1::$ty>(&self.writer, req.into_inner().$field).await?;
                    Ok(Response::new(v1::$entry { $field: Some(r), meta: Some(meta) }))
                }
                async fn $update(&self, req: Request<v1::$updatereq>) -> Result<Response<v1::$entry>, Status> {
                    let q = req.into_inner();
                    let (r, meta) = update::<v1::$ty>(&self.writer, q.$field, q.expected_revision).await?;
                    Ok(Response::new(v1::$entry { $field: Some(r), meta: Some(meta) }))
                }
                async fn $delete(&self, req: Request<v1::$deletereq>) -> Result<Response<v1::$deleteresp>, Status> {
                    let q = req.get_ref();
                    let revision = delete::<v1::$ty>(&self.writer, &q.$idf, q.expected_revision).await?;
                    Ok(Response::new(v1::$deleteresp { revision }))
                }
            )*
        }
    };
}

resource_service! {
    Route, RouteEntry, route, id,
        get_route GetRouteRequest, list_routes ListRoutesRequest ListRoutesResponse,
        create_route CreateRouteRequest, update_route UpdateRouteRequest,
        delete_route DeleteRouteRequest DeleteRouteResponse;
    Service, ServiceEntry, service, id,
        get_service GetServiceRequest, list_services ListServicesRequest ListServicesResponse,
        create_service CreateServiceRequest, update_service UpdateServiceRequest,
        delete_service DeleteServiceRequest DeleteServiceResponse;
    Upstream, UpstreamEntry, upstream, id,
        get_upstream GetUpstreamRequest, list_upstreams ListUpstreamsRequest ListUpstreamsResponse,
        create_upstream CreateUpstreamRequest, update_upstream UpdateUpstreamRequest,
        delete_upstream DeleteUpstreamRequest DeleteUpstreamResponse;
    Consumer, ConsumerEntry, consumer, username,
        get_consumer GetConsumerRequest, list_consumers ListConsumersRequest ListConsumersResponse,
        create_consumer CreateConsumerRequest, update_consumer UpdateConsumerRequest,
        delete_consumer DeleteConsumerRequest DeleteConsumerResponse;
    Ssl, SslEntry, ssl, id,
        get_ssl GetSslRequest, list_ssls ListSslsRequest ListSslsResponse,
        create_ssl CreateSslRequest, update_ssl UpdateSslRequest,
        delete_ssl DeleteSslRequest DeleteSslResponse;
    GlobalRule, GlobalRuleEntry, global_rule, id,
        get_global_rule GetGlobalRuleRequest, list_global_rules ListGlobalRulesRequest ListGlobalRulesResponse,
        create_global_rule CreateGlobalRuleRequest, update_global_rule UpdateGlobalRuleRequest,
        delete_global_rule DeleteGlobalRuleRequest DeleteGlobalRuleResponse;
    PluginConfig, PluginConfigEntry, plugin_config, id,
        get_plugin_config GetPluginConfigRequest, list_plugin_configs ListPluginConfigsRequest ListPluginConfigsResponse,
        create_plugin_config CreatePluginConfigRequest, update_plugin_config UpdatePluginConfigRequest,
        delete_plugin_config DeletePluginConfigRequest DeletePluginConfigResponse;
}
